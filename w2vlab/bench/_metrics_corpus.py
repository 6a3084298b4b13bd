"""Corpus metrics: ``embed_corpus`` on a synthetic corpus, whole pipeline against the model alone, bucketed
against one by one, Ray against local, and peak RSS on N against 10xN clips.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vlab._benchrow import metric_row
from w2vlab.bench._context import BenchContext, Rows
from w2vlab.bench._procs import run_child_report
from w2vlab.bench._synth import corpus_lengths, write_corpus
from w2vlab.bench._timing import paired_seconds

CORPUS_WARMUP = 1  # pairs of whole corpus runs before timing: TorchScript has then seen every batch shape
ONE_BY_ONE = 1e-9  # batch_seconds below any clip's length: every clip is a batch of its own
MAX_CORPUS_DIFF = 1e-5  # max |diff| between two runs' embeddings of the same corpus
# Batch budget of the peak-RSS runs: N (24, or 48) short clips (1-2 s) fill several batches of it, so both runs'
# largest batch is the same (at the default 60 s, 24 clips would be one batch smaller than the 10xN run's
# largest, and the ratio would measure batch size, not corpus size).
RSS_BATCH_SECONDS = 10.0


class CorpusRuns:
    """Callable: one :func:`w2vlab.corpus._embed.embed_corpus` of the bench corpus with the context's embedder,
    each call into a fresh output directory (``force=True``); :attr:`output` is the last one."""

    def __init__(self, ctx: BenchContext, name: str, **options: Any):
        self.ctx, self.name, self.options = ctx, name, options
        self.calls, self.summary = 0, None

    @property
    def output(self) -> Path:
        return self.ctx.work / "corpus_runs" / f"{self.name}_{self.calls}"

    def __call__(self) -> Any:
        from w2vlab.corpus._embed import embed_corpus

        self.calls += 1
        self.summary = embed_corpus(
            self.ctx.corpus, self.output, self.ctx.embedder, progress=False, force=True, **self.options
        )
        if self.summary.failed or self.summary.done != self.ctx.corpus_files:
            raise RuntimeError(f"bench corpus run {self.output}: {self.summary.headline()}")
        return self.summary


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest |a[k] - b[k]| over every key; inf when the key sets differ."""
    if set(a) != set(b):
        return float("inf")
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def corpus_diff(a: Path, b: Path) -> float:
    """:func:`max_abs_diff` of two ``embed-corpus`` outputs, read back from their scp/ark."""
    from w2vlab.corpus._trials import load_embeddings

    return max_abs_diff(load_embeddings(a), load_embeddings(b))


def throughputs(ctx: BenchContext, **seconds: float) -> dict[str, float]:
    """``{name}_audio_s_per_s`` for each side's median wall seconds."""
    return {f"{name}_audio_s_per_s": ctx.corpus_seconds / s for name, s in seconds.items()}


def corpus_facts(ctx: BenchContext, batches: int) -> dict[str, Any]:
    return {"files": ctx.corpus_files, "audio_s": ctx.corpus_seconds, "batches": batches}


def prepared_corpus(ctx: BenchContext) -> list[Any]:
    """The corpus's batches exactly as the local engine plans them (default budget), with their model inputs
    computed beforehand (:class:`w2vlab.corpus._embed.BatchPreparer`)."""
    from w2vlab.corpus._embed import DEFAULT_BATCH_SECONDS, BatchPreparer, clip_seconds, plan_batches, read_source

    e = ctx.embedder
    batches = plan_batches([(item, clip_seconds(item)) for item in read_source(ctx.corpus)], DEFAULT_BATCH_SECONDS)
    preparer = BatchPreparer(e.prepare, e.sample_rate, e.min_num_samples)
    return [preparer(batch) for batch in batches]


def metric_corpus_pipeline_overhead(ctx: BenchContext) -> Rows:
    """The whole local pipeline (list, read, resample, features, bucketing, inference, kaldiio writing)
    against the model alone on the same batches' inputs already in memory."""
    prepared = prepared_corpus(ctx)
    pipeline = CorpusRuns(ctx, "pipeline")

    def model_only() -> list[torch.Tensor]:
        return [ctx.embedder.embed(batch.inputs) for batch in prepared]

    from w2vlab.corpus._trials import load_embeddings

    t_pipe, t_model = paired_seconds(pipeline, model_only, ctx.repeats, warmup=CORPUS_WARMUP)
    alone = {k: row for batch, out in zip(prepared, model_only()) for k, row in zip(batch.keys, out.numpy())}
    diff = max_abs_diff(load_embeddings(pipeline.output), alone)
    overhead = 1.0 - t_model / t_pipe
    return {
        "corpus_pipeline_overhead": metric_row(
            "pipeline_s",
            t_pipe,
            "model_only_s",
            t_model,
            "overhead <= 0.05 (meaningful at --size full; smaller models leave the fixed costs exposed)",
            overhead <= 0.05 and diff <= MAX_CORPUS_DIFF,
            overhead=overhead,
            overhead_definition="1 - model_only_s / pipeline_s: the share of the pipeline's wall time not spent "
            "in embedder.embed on the same batches",
            **throughputs(ctx, pipeline=t_pipe, model_only=t_model),
            max_abs_diff=diff,
            **corpus_facts(ctx, len(prepared)),
        )
    }


def metric_corpus_bucketing_vs_one_by_one(ctx: BenchContext) -> Rows:
    """The local pipeline with length-bucketed batches (default budget) against one clip per batch."""
    bucketed = CorpusRuns(ctx, "bucketed")
    single = CorpusRuns(ctx, "one_by_one", batch_seconds=ONE_BY_ONE)
    t_bucketed, t_single = paired_seconds(bucketed, single, ctx.repeats, warmup=CORPUS_WARMUP)
    diff = corpus_diff(bucketed.output, single.output)
    goal = 1.0 if ctx.size == "full" else 1.5
    applied = "--size full" if ctx.size == "full" else f"the --size small target at --size {ctx.size}"
    return {
        "corpus_bucketing_vs_one_by_one": metric_row(
            "one_by_one_s",
            t_single,
            "bucketed_s",
            t_bucketed,
            f">= 1.0x throughput at --size full, >= 1.5x at --size small (applied: >= {goal}, {applied}) "
            f"with max|diff| <= {MAX_CORPUS_DIFF}",
            t_single / t_bucketed >= goal and diff <= MAX_CORPUS_DIFF,
            **throughputs(ctx, bucketed=t_bucketed, one_by_one=t_single),
            max_abs_diff=diff,
            **corpus_facts(ctx, bucketed.summary.batches),
            one_by_one_batches=single.summary.batches,
        )
    }


def start_ray(ray: Any, workers: int) -> float | None:
    """Seconds ``ray.init`` took, or None when Ray was already running in this process (not started here)."""
    if ray.is_initialized():
        return None
    start = time.perf_counter()
    ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - start


def metric_corpus_ray_vs_local(ctx: BenchContext) -> Rows:
    """The Ray Data engine (``threads`` actors of one thread each) against the local engine (one process,
    ``threads`` threads) on the same corpus and batches; ``ray.init`` timed apart, outside both sides."""
    target = f"max|diff| <= {MAX_CORPUS_DIFF}; speed reported, no target (one machine: Ray's gain is more machines)"
    try:
        from w2vlab.corpus._ray import require_ray, run_ray

        ray = require_ray()
    except ImportError as e:
        return {
            "corpus_ray_vs_local": {"skipped": "ray not installed", "reason": str(e), "target": target, "met": None}
        }
    workers = max(1, ctx.threads)
    init_s = start_ray(ray, workers)
    try:
        local = CorpusRuns(ctx, "local")
        remote = CorpusRuns(ctx, "ray", engine=run_ray, workers=workers)
        t_local, t_ray = paired_seconds(local, remote, ctx.repeats, warmup=CORPUS_WARMUP)
    finally:
        if init_s is not None:
            ray.shutdown()
    diff = corpus_diff(local.output, remote.output)
    return {
        "corpus_ray_vs_local": metric_row(
            "local_s",
            t_local,
            "ray_s",
            t_ray,
            target,
            diff <= MAX_CORPUS_DIFF,
            ray_init_s=init_s,
            ray_workers=workers,
            ray_version=ray.__version__,
            per_run="each Ray run starts its actor pool (actors load the artifact); ray.init is not in ray_s",
            **throughputs(ctx, local=t_local, ray=t_ray),
            max_abs_diff=diff,
            **corpus_facts(ctx, local.summary.batches),
        )
    }


def metric_corpus_peak_rss(ctx: BenchContext) -> Rows:
    """Peak RSS of ``embed_corpus`` (a child process each, same batch budget) on N and on 10xN short clips (1-2 s)."""
    n = ctx.corpus_files
    scp = write_corpus(ctx.work / "corpus_short", corpus_lengths(10 * n, 1.0, 2.0, seed=11), head=n)
    runs = {
        count: run_child_report(
            "embed_corpus_peak",
            ctx.art,
            source,
            ctx.work / "corpus_runs" / f"rss_{count}",
            ctx.threads,
            RSS_BATCH_SECONDS,
            env=ctx.env,
        )
        for count, source in ((n, scp.with_name("head.scp")), (10 * n, scp))
    }
    small, large = runs[n], runs[10 * n]
    return {
        "corpus_peak_rss_n_vs_10n": metric_row(
            "peak_rss_10n_bytes",
            large.peak_rss_bytes,
            "peak_rss_n_bytes",
            small.peak_rss_bytes,
            "<= 1.1",
            large.peak_rss_bytes <= 1.1 * small.peak_rss_bytes,
            files_n=n,
            files_10n=10 * n,
            audio_s_n=small.report["audio_seconds"],
            audio_s_10n=large.report["audio_seconds"],
            batch_seconds=RSS_BATCH_SECONDS,
            batches_n=small.report["batches"],
            batches_10n=large.report["batches"],
            wall_s_n=small.wall_s,
            wall_s_10n=large.wall_s,
        )
    }
