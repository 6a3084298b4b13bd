"""w2vlab: export a W2V-BERT 2.0 speaker encoder to TorchScript, with parity proofs.

The public entry points load lazily, so ``import w2vlab`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["load_speaker_encoder", "load_artifact", "compute_input_features_from_wave", "compare"]


def __getattr__(name):
    if name == "load_speaker_encoder":
        from w2vlab.model._checkpoint import load_speaker_encoder as f
    elif name == "load_artifact":
        from w2vlab.runtime._artifact import load_artifact as f
    elif name == "compute_input_features_from_wave":
        from w2vlab._features import compute_input_features_from_wave as f
    elif name == "compare":
        from w2vlab._parity import compare as f
    else:
        raise AttributeError(f"module 'w2vlab' has no attribute {name!r}")
    return f
