"""The exporter: capture, save, verify and describe each artifact format.

Imports the leaves, the runtime and the model; never the lab, the corpus or the benchmark.
"""
