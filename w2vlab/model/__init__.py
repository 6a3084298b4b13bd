"""The eager speaker encoder: its config, strict checkpoint loading, the demo checkpoints.

Imports the leaves and the runtime.
"""

from w2vlab._lazy import attach

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        # loading
        "load_speaker_encoder": "_checkpoint",
        "LoadedModel": "_checkpoint",
        "CheckpointMismatchError": "_checkpoint",
        "feature_extractor_for": "_checkpoint",
        "read_state_dict": "_checkpoint",
        # the model
        "SpeakerEncoder": "_encoder",
        "AttentiveStatsPool": "_encoder",
        "AbsentBlock": "_encoder",
        "build_encoder": "_encoder",
        "count_parameters": "_encoder",
        # its head config and pruning fields
        "HeadConfig": "_config",
        "merge_config": "_config",
        "is_pruned": "_config",
        "layer_widths": "_config",
        # demo checkpoints: random weights, or the packaged trained one
        "write_demo_checkpoint": "_demo",
        "write_trained_checkpoint": "_demo",
        "build_demo_model": "_demo",
        "encoder_config": "_demo",
        "write_wespeaker_demo": "_wespeaker_demo",
        # the speaker heads HF Trainer saves (Wav2Vec2BertForXVector, ...ForSequenceClassification)
        "HFSpeakerHead": "_hf_heads",
        "HFHead": "_hf_heads",
        # the eager reference as a corpus embedder
        "EagerEmbedder": "_eager",
    },
)
