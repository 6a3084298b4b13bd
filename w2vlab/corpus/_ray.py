"""The Ray Data engine of ``embed-corpus``: the same batches, steps and writer, on a pool of actors.

    embed_corpus(source, output, embedder, engine=run_ray, workers=4)   # 4 actors
    RAY_ADDRESS=ray://head-node:10001 w2vlab embed-corpus SOURCE --output DIR --artifact A --engine ray --workers 8

The driver does what the local engine does before and after the model: it lists the clips,
plans the length-bucketed batches (:func:`w2vlab.corpus._embed.plan_batches`) and owns the one
:class:`~w2vlab.corpus._embed.CorpusWriter`, so the output files, the failure list and the resume rules
are the local engine's.  In between, Ray Data maps each planned batch through
``map_batches(EmbedBatches, compute=ActorPoolStrategy(size=actors))``: an actor builds the
embedder once from its picklable ``recipe`` and runs, per batch, the local engine's own
:class:`~w2vlab.corpus._embed.BatchPreparer` (read, resample, validate, features) and
:func:`~w2vlab.corpus._embed.embed_prepared`.  Results stream back to the driver as they finish.

``ray.init()`` is called only when no Ray instance is running in this process; it honours
``RAY_ADDRESS``, so the same command runs on an existing cluster (whose nodes must see the audio
and artifact paths and have w2vlab installed).  ``ray[data]`` is the optional ``[scale]`` extra.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from w2vlab._contract import MissingDependencyError, require
from w2vlab.corpus._embed import BatchPreparer, CorpusItem, CorpusWriter, Embedder, embed_prepared

SCALE_HINT = "pip install 'w2vlab[scale]'  (in a checkout: pip install -e '.[scale]'; installs ray[data])"
CPUS_PER_ACTOR = 1  # each actor runs torch with this many threads


def require_ray() -> Any:
    """``ray`` (with Ray Data), or a :class:`~w2vlab._contract.MissingDependencyError` (an ``ImportError``)
    that says what to install."""
    require("ray", needed_by="--engine ray", hint=SCALE_HINT)
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library needs pyarrow and pandas)
    except ImportError as e:  # ray without its Data extra
        raise MissingDependencyError(
            f"--engine ray needs Ray Data, which is not installed ({e}); run: {SCALE_HINT}"
        ) from e
    return ray


def _encode(batch: Sequence[CorpusItem]) -> str:
    return json.dumps([{**dataclasses.asdict(item), "path": str(item.path)} for item in batch])


def _decode(text: str) -> tuple[CorpusItem, ...]:
    return tuple(CorpusItem(**{**item, "path": Path(item["path"])}) for item in json.loads(text))


class EmbedBatches:
    """A Ray actor: the embedder, built once, then read -> prepare -> embed for each planned batch.

    Output rows, one per clip: ``key``, ``path``, ``embedding`` (float32 bytes; empty when the
    clip failed), ``reason`` (empty when it did not) and ``seconds`` of audio.
    """

    def __init__(self, recipe: Callable[[], Embedder], identity: dict[str, Any]):
        import torch

        from w2vlab._allocator import keep_freed_memory

        torch.set_num_threads(CPUS_PER_ACTOR)
        keep_freed_memory()  # this worker embeds batch after batch (w2vlab._allocator)
        self.embedder = recipe()
        if json.dumps(self.embedder.identity, sort_keys=True) != json.dumps(identity, sort_keys=True):
            raise RuntimeError(
                f"a Ray actor built {self.embedder.identity}, not the driver's {identity}: "
                f"do the cluster's nodes see the same artifact or checkpoint?"
            )
        e = self.embedder
        self.preparer = BatchPreparer(e.prepare, e.sample_rate, e.min_num_samples)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"key": [], "path": [], "embedding": [], "reason": [], "seconds": []}

        def add(key: str, path: str, embedding: bytes, reason: str, seconds: float) -> None:
            for name, value in zip(out, (key, path, embedding, reason, seconds)):
                out[name].append(value)

        for text in rows["items"]:
            prepared = self.preparer(_decode(text))
            keys, embeddings, failures = embed_prepared(self.embedder, prepared) if prepared.keys else ([], None, [])
            lengths = dict(zip(prepared.keys, prepared.seconds))
            paths = dict(zip(prepared.keys, prepared.paths))
            for key, row in zip(keys, embeddings if keys else ()):
                add(key, paths[key], row.astype(np.float32).tobytes(), "", lengths[key])
            for key, path, reason in (*prepared.failures, *failures):
                add(key, path, b"", reason, 0.0)
        return out


def run_ray(
    batches: Sequence[Sequence[CorpusItem]],
    embedder: Embedder,
    writer: CorpusWriter,
    *,
    workers: int = 1,
    bar: Any = None,
) -> float:
    """Embed ``batches`` on ``workers`` Ray actors (at least one) and write each result on this
    driver; returns the seconds of audio embedded.  Same signature and results as
    :func:`w2vlab.corpus._embed.run_local`."""
    ray = require_ray()
    actors = max(1, workers)
    if not batches:
        return 0.0
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the run's own tqdm bar counts files
    dataset = ray.data.from_items([{"items": _encode(batch)} for batch in batches], override_num_blocks=len(batches))
    results = dataset.map_batches(
        EmbedBatches,
        fn_constructor_args=(embedder.recipe, dict(embedder.identity)),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=CPUS_PER_ACTOR,
    )
    seconds = 0.0
    for block in results.iter_batches(batch_size=None, batch_format="numpy"):
        ok = [i for i, reason in enumerate(block["reason"]) if not reason]
        if ok:
            writer.write(
                [str(block["key"][i]) for i in ok],
                np.stack([np.frombuffer(block["embedding"][i], dtype=np.float32) for i in ok]),
            )
        for i in (i for i, reason in enumerate(block["reason"]) if reason):
            writer.fail(str(block["key"][i]), str(block["path"][i]), str(block["reason"][i]))
        seconds += float(np.sum(block["seconds"]))
        if bar is not None:
            bar.update(len(block["key"]))
    return seconds


run_ray.engine_name = "corpus_ray"  # the engine name progress.json and summary.json record
