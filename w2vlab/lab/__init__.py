"""The workbench: figures, checks, widgets, notebook reports, the environment check.

Imports anything but the benchmark.  Figures only draw reports and return a ``Figure``.
"""

from w2vlab._lazy import attach

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        # figures
        "plot_parity": "_plots",
        "plot_parity_modes": "_plots",
        "plot_embedding_scatter": "_plots",
        "plot_feature_difference": "_plots",
        "plot_latency": "_plots",
        "plot_similarity_matrix": "_plots",
        "plot_layer_widths": "_plots",
        "plot_bench": "_plots",
        "plot_trial_parity": "_plots",
        "plot_pooling_choice": "_pooling",
        "pooling_errors": "_pooling",
        # one-line checks for notebooks
        "check": "_check",
        # widgets
        "build_workbench": "_widgets",
        "explore": "_widgets",
        "explorer_panel": "_widgets",
        # notebook reports
        "write_report": "_report",
        # the environment check (w2vlab doctor)
        "doctor": "_envcheck",
        "check_artifact": "_envcheck",
        "format_report": "_envcheck",
    },
)
