"""Corpus embedding (one machine or Ray Data), trial scoring and decision parity.

Imports the leaves and the runtime.
"""

from w2vlab._lazy import attach

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        # embedding a corpus to Kaldi ark/scp
        "embed_corpus": "_embed",
        "ArtifactEmbedder": "_embed",
        "CorpusSummary": "_embed",
        "read_source": "_embed",
        # scoring as WeSpeaker scores: mean subtraction, AS-Norm, its score files
        "ScoreNorm": "_norm",
        "cohort_mean": "_norm",
        "subtract_mean": "_norm",
        "as_norm": "_norm",
        "score_trials_normed": "_norm",
        "compare_embeddings_normed": "_norm",
        "read_scores": "_norm",
        # the Ray Data engine
        "run_ray": "_ray",
        # trials: scores, EER, minDCF, flipped decisions
        "read_trials": "_trials",
        "load_embeddings": "_trials",
        "score_trials": "_trials",
        "compare_trials": "_trials",
        "compare_embeddings": "_trials",
        "eer": "_trials",
        "min_dcf": "_trials",
        "det_curve": "_trials",
        "Trials": "_trials",
        "TrialScores": "_trials",
        "TrialComparison": "_trials",
    },
)
