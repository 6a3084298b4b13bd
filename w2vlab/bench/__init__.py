"""The benchmark, ``python -m w2vlab.bench``: every speed and memory goal, measured side by side.

Nothing in the package imports it.
"""
