"""w2vlab: export a W2V-BERT 2.0 speaker encoder to TorchScript, ``.pt2`` and ONNX, with parity proofs.

The public API is ``__all__`` here and in each subpackage; modules whose names start with ``_``
are internal.  Layers, each a folder (``tests/test_layout.py`` holds the rule):

- leaves (this folder): the artifact contract, audio, features, parity, the allocator;
- :mod:`w2vlab.runtime`: load an artifact and embed audio (imports the leaves only);
- :mod:`w2vlab.model`: the eager speaker encoder and its checkpoints;
- :mod:`w2vlab.export`: capture, verify and describe each format;
- :mod:`w2vlab.corpus`: corpus embedding, trial scoring, decision parity;
- :mod:`w2vlab.lab`: figures, widgets, notebook reports, the environment check;
- :mod:`w2vlab.bench`: the benchmark (nothing imports it).

Names load on first use, so ``import w2vlab`` stays cheap and loading an artifact never imports
the exporter.
"""

from w2vlab._lazy import attach
from w2vlab._version import __version__ as __version__

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        # consumer
        "load_artifact": "w2vlab.runtime._artifact",
        "Artifact": "w2vlab.runtime._artifact",
        # errors a user causes and can fix (the CLI prints these as one line)
        "W2vlabError": "w2vlab._contract",
        "InputError": "w2vlab._contract",
        "AudioTooShortError": "w2vlab._contract",
        "ArtifactError": "w2vlab._contract",
        "MissingDependencyError": "w2vlab._contract",
        "SAMPLE_RATE": "w2vlab._contract",
        # audio and features
        "read_audio": "w2vlab._audio",
        "prepare_waveform": "w2vlab._audio",
        "prepare_clip": "w2vlab._audio",
        "FeatureConfig": "w2vlab._features",
        "compute_input_features_from_wave": "w2vlab._features",
        # parity
        "compare": "w2vlab._parity",
        "ParityBounds": "w2vlab._parity",
        "ParityReport": "w2vlab._parity",
        # model and export
        "load_speaker_encoder": "w2vlab.model._checkpoint",
        "write_demo_checkpoint": "w2vlab.model._demo",
        "ExportParityError": "w2vlab.export._pipeline",  # the call itself: w2vlab.export.export
        # corpus
        "embed_corpus": "w2vlab.corpus._embed",
        # process-wide setting for consumers that embed clip after clip
        "keep_freed_memory": "w2vlab._allocator",
    },
)
