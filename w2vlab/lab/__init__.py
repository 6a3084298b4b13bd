"""The workbench: figures, widgets, notebook reports, the environment check.

Imports anything but the benchmark.
"""
