"""The consumer: load an exported artifact and embed audio with it.

Imports the leaves only (contract, audio, features, parity): never the model, the exporter or the
lab, so a program that embeds audio carries none of them.
"""

from w2vlab._lazy import attach

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        # the artifact
        "load_artifact": "_artifact",
        "Artifact": "_artifact",
        # one file of an artifact, opened as a callable after its hash is checked
        "load_format": "_loaders",
        "load_script": "_loaders",
        "open_format": "_loaders",
        # the C++ consumer (libtorch)
        "build": "_cpp",
        "run": "_cpp",
        "CppRun": "_cpp",
        "MissingBuildDependencies": "_cpp",
    },
)
