"""The eager speaker encoder: its config, checkpoint loading, the demo checkpoints.

Imports the leaves and the runtime.
"""
