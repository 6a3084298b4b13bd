"""The benchmark, ``python -m w2vlab.bench``: every speed and memory goal, measured side by side.

:func:`run` measures and returns the JSON-able result, :func:`main` is the command line; the
timing helpers (:func:`median_seconds`, :func:`paired_seconds`, :func:`alternated_seconds`) time
anything the same way.  The rows of the result are typed in :mod:`w2vlab._benchrow`, which the
lab's plots read too.  Nothing in the package imports the benchmark.

Modules: :mod:`~w2vlab.bench._harness` (the metrics' order, :func:`run`, :func:`main`),
:mod:`~w2vlab.bench._context` (what the metrics share), :mod:`~w2vlab.bench._procs` and
:mod:`~w2vlab.bench._child` (child processes, parent and child side), :mod:`~w2vlab.bench._timing`,
:mod:`~w2vlab.bench._flops` (FLOP model, GEMM ceilings), :mod:`~w2vlab.bench._onnx`,
:mod:`~w2vlab.bench._synth` (the synthetic corpus) and one ``_metrics_*`` module per family of metrics:
``frontend``, ``export``, ``startup``, ``allocator``, ``precision``, ``openvino`` (with
:mod:`~w2vlab.bench._openvino`, the ``[openvino]`` extra), ``corpus``.

The names are imported on first use: a benchmark child process (``python -m w2vlab.bench._child``)
imports this package too, and must load nothing beyond what it measures.
"""

from w2vlab._lazy import attach

__all__, __getattr__, __dir__ = attach(
    __name__,
    {
        "run": "_harness",
        "main": "_harness",
        "median_seconds": "_timing",
        "paired_seconds": "_timing",
        "alternated_seconds": "_timing",
    },
)
