"""The consumer: load an exported artifact and embed audio with it.

Imports the leaves only (contract, audio, features, parity): never the model, the exporter, the lab.
"""
