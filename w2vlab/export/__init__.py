"""The exporter: capture, save, verify and describe each artifact format.

Imports the leaves, the runtime, the model and the corpus (whose trial scoring gates the int8 copy on
decisions); never the lab or the benchmark.
"""

from w2vlab._lazy import attach

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        # the one call
        "export": "_pipeline",
        "ExportResult": "_pipeline",
        "ExportParityError": "_pipeline",
        # reduced precision gated on decisions
        "DecisionGate": "_decisions",
        "EvalSet": "_decisions",
        # the parity suite every export is verified on
        "Case": "_suite",
        "build_suite": "_suite",
        "named_suite": "_suite",
        "audio_files": "_suite",
        "synthetic_speech": "_suite",
        "hf_features": "_suite",
        "reference_fn": "_suite",
        "candidate_fn": "_suite",
        "embed_suite": "_suite",
        "verify": "_suite",
        "QUICK_LENGTHS": "_suite",
        "DEFAULT_LENGTHS": "_suite",
        "SAMPLE_RATE": "_suite",
        # TorchScript
        "script_module": "_torchscript",
        "save_script": "_torchscript",
        # the model card
        "render_model_card": "_card",
        # why tracing HF's extractor fails
        "naive_waveform_trace": "_naive",
        "naive_trace_report": "_naive",
        "ignores_input": "_naive",
    },
)
