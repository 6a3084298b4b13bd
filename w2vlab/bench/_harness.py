"""Benchmark: speed and memory as ratios measured side by side in one run.

    python -m w2vlab.bench [--size tiny|small|full | --model-path DIR] [--quick] [--threads 2] [--json OUT]
                           [--only METRIC[,METRIC]] [--trials DIR]

Prints one JSON object.  Each metric has both sides' measurements (median of several runs
after a warm-up), their ratio, the target and whether it is met, plus the parity of what was
timed: a speed-up that loses parity does not count.  One export (a child process, its peak
RSS measured) writes a real artifact directory with every format (TorchScript, the
``torch.export`` ``.pt2`` and, with the ``[onnx]`` extra, ONNX Runtime fp32 and the dynamic-int8
copy, labelled as such and judged by cosine); every format of it is timed on the same 10 s clip
alternated with eager, and each one's time to a first embedding is measured in a fresh process
going through the consumer, ``load_artifact(dir, "preprocessed", fmt).embed(wave, 16000)``.
The corpus metrics run ``embed_corpus`` (the artifact's preprocessed TorchScript file) on a
synthetic corpus of 16 kHz WAV files of 1-12 s written into the work directory: whole pipeline
against the model alone on the same batches, bucketed against one clip per batch, the Ray Data
engine against the local one, and the peak RSS of a corpus ten times larger.
The machine this runs on is shared and noisy, so only ratios taken in the same run are
meaningful; none of this is a test.

Layout: one ``metric_*`` function per measurement, each taking the shared
:class:`~w2vlab.bench._context.BenchContext` and returning its JSON rows
(:class:`w2vlab._benchrow.MetricRow`), in one ``w2vlab.bench._metrics_*`` module per family;
:data:`METRICS` lists them in order and :func:`run` calls them.  The child processes are the
functions of :mod:`w2vlab.bench._child`, run by :func:`w2vlab.bench._procs.run_child`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from w2vlab._allocator import keep_freed_memory, trim
from w2vlab._atomic import write_json
from w2vlab._benchrow import BenchResult
from w2vlab.bench._context import (
    BenchContext,
    Rows,
    check_model_path,
    check_reusable,
    check_trials,
    make_context,
    resolve_size,
)
from w2vlab.bench._metrics_allocator import metric_allocator
from w2vlab.bench._metrics_corpus import (
    metric_corpus_bucketing_vs_one_by_one,
    metric_corpus_peak_rss,
    metric_corpus_pipeline_overhead,
    metric_corpus_ray_vs_local,
)
from w2vlab.bench._metrics_export import (
    artifact_sizes,
    metric_encoder_flops_fraction,
    metric_export_peak_rss,
    metric_fastest_artifact_vs_eager,
    metric_formats_vs_eager,
    metric_padded_batch,
    metric_torchscript_vs_eager,
    metric_waveform_vs_hf_plus_eager,
)
from w2vlab.bench._metrics_frontend import metric_frontend_busy, metric_frontend_vs_hf
from w2vlab.bench._metrics_openvino import metric_openvino
from w2vlab.bench._metrics_precision import metric_onnx_rewrites, metric_reduced_precision
from w2vlab.bench._metrics_startup import metric_cpp_vs_python_first_embedding, metric_time_to_first_embedding

logger = logging.getLogger(__name__)


# after the export, in this order (also the order of the JSON's metrics)
METRICS: tuple[Callable[[BenchContext], Rows], ...] = (
    metric_frontend_vs_hf,
    metric_frontend_busy,
    metric_waveform_vs_hf_plus_eager,
    metric_torchscript_vs_eager,
    metric_formats_vs_eager,
    metric_allocator,
    metric_onnx_rewrites,
    metric_reduced_precision,
    metric_openvino,
    metric_fastest_artifact_vs_eager,
    metric_encoder_flops_fraction,
    metric_time_to_first_embedding,
    metric_cpp_vs_python_first_embedding,
    metric_padded_batch,
    metric_corpus_pipeline_overhead,
    metric_corpus_bucketing_vs_one_by_one,
    metric_corpus_ray_vs_local,
    metric_corpus_peak_rss,
)


SHARED = "export_peak_rss"  # the export every other metric measures its artifact from: always run


def metric_name(measure: Callable[[BenchContext], Rows]) -> str:
    """What ``--only`` calls a metric function: its name without ``metric_``."""
    return measure.__name__.removeprefix("metric_")


def select_metrics(only: Sequence[str] | None) -> tuple[Callable[[BenchContext], Rows], ...]:
    """The functions of :data:`METRICS` named in ``only`` (all when None), in :data:`METRICS` order.

    Raises ``ValueError`` naming the choices for an unknown name.
    """
    if only is None:
        return METRICS
    names = {metric_name(m) for m in METRICS} | {SHARED}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(names)}")
    return tuple(m for m in METRICS if metric_name(m) in only)


def run(
    size: str | None = None,
    quick: bool = False,
    threads: int = 2,
    workdir: str | Path | None = None,
    only: Sequence[str] | None = None,
    progress: Callable[[BenchResult], None] | None = None,
    reuse: bool = False,
    trials: str | Path | None = None,
    model_path: str | Path | None = None,
) -> BenchResult:
    """Measure everything (or the metrics named in ``only``, after the export, which always runs) for the
    random-weight demo model of ``size`` (None: tiny), or for the checkpoint folder ``model_path`` (e.g. the
    trained demo, ``w2vlab demo-checkpoint OUT --trained``; ``size`` then None or ``"custom"``, what the
    result reports); returns the JSON-able result, whose ``"model"`` names the checkpoint measured and the
    sha256 of its weights (the artifact's ``source_weights_sha256``).

    A metric that raises is logged and listed under ``"failed"`` (type and message), and the
    run goes on with the next one; ``progress`` is called with the result so far after each
    metric (the command line writes it to ``--json``, so a run stopped at hour two keeps what
    it measured).  Checkpoints and artifacts go to ``workdir`` (kept), else to a temporary
    directory that is removed afterwards (at full size, every format of both modes: several
    times the weights' 2.3 GB).  ``reuse``: measure the checkpoint and artifact an earlier run
    left in ``workdir`` instead of exporting again (a full-size export takes about 7 minutes);
    the export's own row is then absent.  ``trials``: a directory with ``trials.txt`` and ``wav.scp``
    whose decisions the reduced-precision candidates must not flip (without it, they are not counted).
    """
    measures = select_metrics(only)
    if workdir is None:
        if reuse:
            raise ValueError("reuse needs the workdir of an earlier run")
        with tempfile.TemporaryDirectory(prefix="w2vlab-bench-") as tmp:
            return run(size, quick, threads, tmp, only, progress, trials=trials, model_path=model_path)
    torch.set_num_threads(threads)
    keep_freed_memory()  # time as the consumers run; the export child keeps glibc's defaults
    ctx = make_context(size, quick, threads, Path(workdir), reuse, trials, model_path)
    result = result_header(ctx, only, measures, reuse)
    start = time.perf_counter()
    result["metrics"] = {} if reuse else metric_export_peak_rss(ctx)
    result["wall_s"] = {} if reuse else {SHARED: time.perf_counter() - start}  # what each metric took, this run
    result["model"] = model_facts(ctx)
    result["artifact_sizes"] = artifact_sizes(ctx)
    result["failed"] = {}
    for i, measure in enumerate(measures, 1):
        name = metric_name(measure)
        logger.info("bench: %s (%d of %d)", name, i, len(measures))
        start = time.perf_counter()
        try:
            result["metrics"].update(measure(ctx))
        except Exception as e:  # noqa: BLE001 - recorded, logged and reported by the exit status
            logger.exception("bench: %s failed", name)
            result["failed"][name] = f"{type(e).__name__}: {e}"
        result["wall_s"][name] = time.perf_counter() - start
        trim()  # this process keeps freed memory (keep_freed_memory): give back what the metric freed
        if progress is not None:
            progress(result)
    return result


def result_header(
    ctx: BenchContext, only: Sequence[str] | None, measures: Sequence[Callable[[BenchContext], Rows]], reuse: bool
) -> BenchResult:
    """The result's first keys: the run's settings, what it measures, the machine."""
    return {
        "size": ctx.size,
        "quick": ctx.quick,
        "threads": ctx.threads,
        "repeats": ctx.repeats,
        "only": None if only is None else [*([] if reuse else [SHARED]), *map(metric_name, measures)],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "reused": str(ctx.work) if reuse else None,
    }


def model_facts(ctx: BenchContext) -> dict[str, Any]:
    """Which checkpoint was measured: its folder's name, whether it is ``--model-path``'s (else the random demo of
    ``--size``) and the sha256 of its weights as the artifact's metadata records them (``source_weights_sha256``;
    None where the export left no artifact)."""
    from w2vlab._contract import METADATA_FILE
    from w2vlab.bench._context import exported_weights

    return {
        "name": ctx.ckpt.name,
        "model_path": None if ctx.model_path is None else str(ctx.model_path),
        "random_demo": ctx.model_path is None,
        "source_weights_sha256": exported_weights(ctx) if (ctx.art / METADATA_FILE).is_file() else None,
    }


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m w2vlab.bench``."""
    parser = argparse.ArgumentParser(prog="python -m w2vlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        choices=("tiny", "small", "full"),
        help="the random-weight demo model written and measured (default: tiny); not with --model-path",
    )
    parser.add_argument(
        "--model-path",
        metavar="DIR",
        type=Path,
        help="measure this checkpoint folder (any that load_speaker_encoder reads, e.g. `w2vlab demo-checkpoint "
        "OUT --trained`) instead of a random demo; the result reports size 'custom'",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run for CI")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the checkpoint and artifact here (default: a temporary directory, removed afterwards)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the checkpoint and artifact an earlier run left in --workdir instead of exporting again",
    )
    parser.add_argument(
        "--only",
        metavar="METRIC[,METRIC]",
        type=lambda text: [n for n in text.split(",") if n],
        help=f"only these metrics (after the export, which always runs): {', '.join(metric_name(m) for m in METRICS)}",
    )
    parser.add_argument(
        "--trials",
        metavar="DIR",
        type=Path,
        help="trials.txt and wav.scp whose decisions reduced_precision counts flips of (in a checkout: "
        "tests/data/corpus); default: none, flips not counted",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m w2vlab.bench``: run the selected metrics, print the JSON; 1 if a metric failed."""
    cli = parser()
    args = cli.parse_args(argv)
    try:
        select_metrics(args.only)
        check_trials(args.trials)
        size = resolve_size(args.size, args.model_path)
        check_model_path(args.model_path)
    except ValueError as e:
        cli.error(str(e))
    if args.reuse:
        if args.workdir is None:
            cli.error("--reuse needs --workdir (the directory of an earlier run)")
        try:
            check_reusable(BenchContext(size, args.quick, args.threads, args.workdir, model_path=args.model_path))
        except ValueError as e:
            cli.error(str(e))
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("w2vlab.bench").setLevel(logging.INFO)  # which metric is running: full size takes two hours
    result = run(
        args.size,
        args.quick,
        args.threads,
        args.workdir,
        args.only,
        None if args.json is None else lambda partial: write_json(args.json, partial),
        args.reuse,
        args.trials,
        args.model_path,
    )
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if args.json:
        write_json(args.json, result)
    if result["failed"]:
        logger.error("bench: %d metric(s) failed: %s", len(result["failed"]), ", ".join(result["failed"]))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
