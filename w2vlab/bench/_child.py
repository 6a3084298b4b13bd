"""The benchmark's child programs: each one a function run in a fresh interpreter.

    python -m w2vlab.bench._child NAME ARG...

The benchmark runs these with :func:`w2vlab.bench._procs.run_child`, so that what they time
(an export's peak memory, the time from ``python`` to a first embedding, a corpus run's peak
memory) starts from nothing.
Each function returns a small JSON-able report; :func:`main` writes it after
:data:`REPORT_MARKER`, then the process's own peak RSS (``VmHWM``, KiB) after
:data:`HWM_MARKER`, as the last lines of stdout.

Nothing heavy is imported at module level: the consumer child must show what the consumer path
alone loads (``sys.modules`` at exit, and whether any of :data:`HEAVY_MODULES` came with it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2vlab._contract import SAMPLE_RATE
from w2vlab.bench._memory import status_kib

REPORT_MARKER = "w2vlab-bench-report"
HWM_MARKER = "w2vlab-vmhwm-kib"
READY_MARKER, ROUND_MARKER = "w2vlab-ready", "w2vlab-round"  # a lockstep child's lines (allocator_runs)
SR = SAMPLE_RATE
# exporter, eager model and HF modelling code: none of these belongs in a consumer process
HEAVY_MODULES = (
    "w2vlab.export._pipeline",
    "w2vlab.model._checkpoint",
    "w2vlab.model._encoder",
    "w2vlab.model._demo",
    "w2vlab.export._suite",
    "transformers.models.wav2vec2_bert.modeling_wav2vec2_bert",
)


def module_report() -> dict[str, Any]:
    """How many modules this process has imported, and which of :data:`HEAVY_MODULES`."""
    return {"modules_loaded": len(sys.modules), "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules]}


def peak_rss_kib() -> int:
    """This process's ``VmHWM`` in KiB (-1 where /proc is not available)."""
    return status_kib("VmHWM")


def export_formats() -> tuple[str, ...]:
    """``--format all`` (every format but aoti) when the ``[onnx]`` extra is installed, else TorchScript
    and ``.pt2``."""
    from w2vlab._contract import ALL_FORMATS, onnx_available

    return ALL_FORMATS if onnx_available() else ("torchscript", "exported")


def export_artifact(ckpt: str, out: str, threads: str) -> dict[str, Any]:
    """Export ``ckpt`` to ``out``: both modes, :func:`export_formats`, verified on a small quick suite."""
    import torch

    from w2vlab._contract import MODES
    from w2vlab.export._pipeline import export
    from w2vlab.export._suite import QUICK_LENGTHS, build_suite

    torch.set_num_threads(int(threads))
    formats = export_formats()
    export(
        ckpt,
        out,
        modes=MODES,
        formats=formats,
        force=True,
        progress=False,
        cases=build_suite(QUICK_LENGTHS[:3], batches=((16160, 8000),)),
    )
    return {"formats": list(formats)}


def first_embedding_eager(ckpt: str, wav_npy: str, threads: str) -> dict[str, Any]:
    """Checkpoint -> eager model + HF extractor -> one embedding of the clip in ``wav_npy``."""
    import numpy as np
    import torch

    from w2vlab._features import extractor_valid_rows
    from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder

    torch.set_num_threads(int(threads))
    wave = np.load(wav_npy)
    loaded = load_speaker_encoder(ckpt)
    model, fe = loaded.model, feature_extractor_for(loaded)
    with torch.inference_mode():
        model(extractor_valid_rows(fe, wave))
    return module_report()


def first_embedding_artifact(artifact_dir: str, mode: str, fmt: str, wav_npy: str, threads: str) -> dict[str, Any]:
    """What a user runs: ``load_artifact(dir, mode, fmt).embed(wave, 16000)``."""
    import numpy as np
    import torch

    from w2vlab.runtime._artifact import load_artifact

    torch.set_num_threads(int(threads))
    wave = np.load(wav_npy)
    load_artifact(artifact_dir, mode, fmt).embed(wave, SR)
    return module_report()


def first_embedding_file(artifact_dir: str, wav: str, out_npy: str, threads: str) -> dict[str, Any]:
    """The C++ consumer's job in Python: ``load_artifact(dir, "waveform").embed_file(wav)``, saved to ``out_npy``."""
    import numpy as np
    import torch

    from w2vlab.runtime._artifact import load_artifact

    torch.set_num_threads(int(threads))
    np.save(out_npy, load_artifact(artifact_dir, "waveform").embed_file(wav).numpy())
    return module_report()


def embed_corpus_peak(artifact_dir: str, source: str, out: str, threads: str, batch_seconds: str) -> dict[str, Any]:
    """``embed_corpus(source, out, ArtifactEmbedder(dir), batch_seconds=...)`` (preprocessed TorchScript,
    local engine, ``force``): its summary, for the peak RSS of a whole corpus run."""
    import torch

    from w2vlab.corpus._embed import ArtifactEmbedder, embed_corpus

    torch.set_num_threads(int(threads))
    summary = embed_corpus(
        source,
        out,
        ArtifactEmbedder(artifact_dir, "preprocessed", "torchscript"),
        batch_seconds=float(batch_seconds),
        progress=False,
        force=True,
    )
    if summary.failed or summary.done != summary.files:
        raise RuntimeError(f"corpus run failed: {summary.headline()}")
    return {name: getattr(summary, name) for name in ("files", "done", "batches", "audio_seconds", "wall_seconds")}


def precision_candidate(
    recipe: str, ckpt: str, artifact_dir: str, inputs: str, out: str, threads: str, repeats: str
) -> dict[str, Any]:
    """Build :mod:`w2vlab.export._precision` ``recipe``, time each of its runners alternated with the fp32
    eager model on the ``clip10`` features of ``inputs``, and save the first runner's embedding of
    every feature tensor there to ``out`` (npz).  ``onnx-int8`` is built before the eager model is
    loaded, so the peak RSS at the end of its build is the quantisation's own."""
    import statistics

    import numpy as np
    import torch

    from w2vlab.bench._timing import alternated_seconds
    from w2vlab.export._precision import build, load_inputs
    from w2vlab.model._checkpoint import load_speaker_encoder

    torch.set_num_threads(int(threads))
    feats = load_inputs(Path(inputs))
    model = None if recipe == "onnx-int8" else load_speaker_encoder(ckpt).model
    runners, build_s = build(recipe, model, Path(artifact_dir), Path(out).parent, int(threads), feats["clip10"])
    build_peak = peak_rss_kib() * 1024
    model = model if model is not None else load_speaker_encoder(ckpt).model
    clip = feats["clip10"]
    with torch.inference_mode():
        times = alternated_seconds(
            [lambda: model(clip), *(lambda r=r: r(clip) for r in runners.values())], int(repeats)
        )
        first = next(iter(runners.values()))
        np.savez(out, **{name: first(x).numpy() for name, x in feats.items()})
    return {
        "build_s": build_s,
        "build_peak_rss_bytes": build_peak,
        "eager_s": statistics.median(times[0]),
        "s": {name: statistics.median(t) for name, t in zip(runners, times[1:])},
    }


def openvino_candidates(
    ckpt: str, artifact_dir: str, inputs: str, calibration: str, out: str, threads: str, repeats: str
) -> dict[str, Any]:
    """Compile :data:`w2vlab.bench._openvino.CANDIDATES` from the artifact's fp32 ONNX file (the int8 ones
    calibrated on the features in ``calibration``, an npz; "-" for none), then time each of them, the
    artifact's ONNX Runtime fp32 file and its int8 copy as shipped (quantised here; with the ``[onnx]``
    extra) alternated with the fp32 eager model on the ``clip10`` features of ``inputs``; save every
    runner's embedding of every feature tensor there to ``out`` (npz, keys ``runner/name``).  Everything
    is built before the eager model is loaded, so the peak RSS at the end of the builds is theirs."""
    import statistics
    import time

    import numpy as np
    import torch

    from w2vlab._contract import FILES, onnx_available
    from w2vlab.bench._openvino import build_openvino
    from w2vlab.bench._timing import alternated_seconds
    from w2vlab.export._precision import build_onnx_int8, load_inputs
    from w2vlab.model._checkpoint import load_speaker_encoder
    from w2vlab.runtime._loaders import load_format

    torch.set_num_threads(int(threads))
    feats, art = load_inputs(Path(inputs)), Path(artifact_dir)
    calib = None if calibration == "-" else load_inputs(Path(calibration))
    onnx_path, dim = art / FILES["onnx", "preprocessed"], feats["clip10"].shape[2]
    reference = {}
    if onnx_available():  # ONNX Runtime fp32 and the int8 copy as shipped (quantize_onnx, spinning off)
        start = time.perf_counter()
        reference = {"onnx-int8": build_onnx_int8(art, Path(out).parent, int(threads), dim)["onnx-int8"]}
        int8_s = time.perf_counter() - start
        reference["onnx"] = load_format(onnx_path, "onnx", "preprocessed", threads=int(threads))
    ov_runners, builds = build_openvino(onnx_path, int(threads), calib, dim)
    runners = {**reference, **ov_runners}
    if reference:
        builds["onnx-int8"] = {"quantize_s": int8_s}
    build_peak = peak_rss_kib() * 1024
    model = load_speaker_encoder(ckpt).model
    clip = feats["clip10"]
    with torch.inference_mode():
        times = alternated_seconds(
            [lambda: model(clip), *(lambda r=r: r(clip) for r in runners.values())], int(repeats)
        )
        np.savez(out, **{f"{r}/{n}": run(x).numpy() for r, run in runners.items() for n, x in feats.items()})
    return {
        "builds": builds,
        "build_peak_rss_bytes": build_peak,
        "eager_s": statistics.median(times[0]),
        "s": {name: statistics.median(t) for name, t in zip(runners, times[1:])},
    }


def allocator_runs(ckpt: str, artifact_dir: str, inputs: str, threads: str, keep: str) -> dict[str, Any]:
    """The eager model and the artifact's preprocessed TorchScript and ONNX files (where present) on the
    ``clip10`` features of ``inputs``, in a process that calls :func:`w2vlab._allocator.keep_freed_memory`
    (``keep`` "1") or leaves glibc's defaults ("0").  Runs in lockstep with a twin process of the
    other setting (:func:`w2vlab.bench._procs.lockstep`): after :data:`READY_MARKER`, each ``round`` line on
    stdin runs every runner once and answers :data:`ROUND_MARKER` and, per runner, (seconds, minor
    page faults)."""
    import resource
    import time

    import torch

    from w2vlab._allocator import keep_freed_memory
    from w2vlab._contract import FILES, format_entries, read_metadata
    from w2vlab.export._precision import load_inputs
    from w2vlab.model._checkpoint import load_speaker_encoder
    from w2vlab.runtime._loaders import load_format

    kept = keep == "1" and keep_freed_memory()
    torch.set_num_threads(int(threads))
    clip, art = load_inputs(Path(inputs))["clip10"], Path(artifact_dir)
    runners = {"eager": load_speaker_encoder(ckpt).model}
    present = format_entries(read_metadata(art), "preprocessed")
    for fmt in ("torchscript", "onnx"):
        if fmt in present:
            runners[fmt] = load_format(art / FILES[fmt, "preprocessed"], fmt, "preprocessed", threads=int(threads))
    sys.stdout.write(f"\n{READY_MARKER}\n")
    sys.stdout.flush()
    with torch.inference_mode():
        for line in sys.stdin:
            if line.strip() != "round":
                break
            out = {}
            for name, runner in runners.items():
                faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                runner(clip)
                out[name] = (time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            sys.stdout.write(f"{ROUND_MARKER} {json.dumps(out)}\n")
            sys.stdout.flush()
    return {"keep_freed_memory": kept}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    f.__name__: f
    for f in (
        export_artifact,
        first_embedding_eager,
        first_embedding_artifact,
        first_embedding_file,
        embed_corpus_peak,
        precision_candidate,
        openvino_candidates,
        allocator_runs,
    )
}
# children that set the allocator themselves: the export hands memory back, allocator_runs compares both
OWN_ALLOCATOR = ("export_artifact", "allocator_runs")


def main(argv: list[str] | None = None) -> int:
    """Run child ``argv[0]`` with the remaining arguments; report it and the peak RSS on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in CHILDREN:
        sys.stderr.write(f"usage: python -m w2vlab.bench._child {{{','.join(CHILDREN)}}} ARG...\n")
        return 2
    if argv[0] not in OWN_ALLOCATOR:
        from w2vlab._allocator import keep_freed_memory

        keep_freed_memory()  # as the consumers run (w2vlab._allocator)
    report = CHILDREN[argv[0]](*argv[1:])
    sys.stdout.write(f"\n{REPORT_MARKER} {json.dumps(report)}\n{HWM_MARKER} {peak_rss_kib()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
