"""``w2vlab`` command line: thin argparse front-ends, each forwarding to one library call.

Errors.  What a user causes and can fix -- a :class:`~w2vlab._contract.W2vlabError` (bad input,
unusable artifact, missing extra) or a missing, existing or unreadable path -- is printed as one
line, ``w2vlab <command>: error: <message>``, with exit status 2 (``-v`` adds the traceback).
Anything else is a bug: it propagates with its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from w2vlab._contract import (
    ALL_FORMATS,
    DEFAULT_OUTPUT,
    DEMO_SIZES,
    FORMATS,
    MODES,
    POOLINGS,
    SUITES,
    InputError,
    W2vlabError,
    format_entries,
    read_metadata,
)

logger = logging.getLogger("w2vlab")

# The errors printed as one line with exit status 2: the project's own, and the OS errors a path
# given on the command line causes.  Everything else (TypeError, KeyError, ...) is a bug.
USER_ERRORS = (W2vlabError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


def _add_suite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--suite",
        choices=SUITES,
        default=SUITES[0],
        help="parity suite each file is verified on: 'full' (23 clips of 35 ms-30 s + 3 padded batches, "
        "209 s of audio) or 'quick' (6 clips of 35 ms-10 s + 1 batch, 21 s: a tenth of the time "
        "per file, for large models on small machines)",
    )


def _demo_checkpoint(args) -> int:
    from w2vlab.model._demo import write_demo_checkpoint, write_trained_checkpoint

    if args.trained:
        if args.pruned or args.size != DEMO_SIZES[0] or args.seed != 0:
            raise InputError("--trained copies the packaged trained model; leave --size, --pruned and --seed out")
        out = write_trained_checkpoint(args.out_dir, overwrite=args.force)
    else:
        out = write_demo_checkpoint(args.out_dir, args.size, args.pruned, args.seed, overwrite=args.force)
    print(out)
    return 0


def _export(args) -> int:
    from w2vlab.export._decisions import DecisionGate, effect_line
    from w2vlab.export._pipeline import ExportParityError, export
    from w2vlab.export._suite import named_suite

    modes = MODES if args.mode == "both" else (args.mode,)
    formats = ALL_FORMATS if args.format == "all" else (args.format,)
    for name in (
        "w2vlab.export._pipeline",
        "w2vlab.export._int8",
    ):  # progress between the bars: each capture, conversion, check
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        result = export(
            args.model_path,
            args.output,
            checkpoint=args.checkpoint,
            config=args.config,
            modes=modes,
            formats=formats,
            force=args.force,
            cases=named_suite(args.suite),
            pooling=args.pooling,
            eval_trials=args.eval_trials,
            gate=DecisionGate(args.max_flip_percent, args.max_eer_change, args.max_kept_blocks),
        )
    except ExportParityError as e:
        for report in e.reports:
            print(report, file=sys.stderr)
        print(f"export FAILED parity; nothing was written to {args.output}", file=sys.stderr)
        return 1
    for report in result.all_reports:
        print(report.headline())
    for mode, entry in result.decisions.items():
        measured = effect_line(entry) if entry["gated"] else "not gated (no --eval-trials)"
        print(f"{mode} onnx-int8 decisions: {measured}")
    for fmt, by_mode in result.refused.items():  # a labelled copy that missed its bounds: not written
        failed = sorted({c for r in by_mode.values() for c in r.failures})
        for report in by_mode.values():
            if not report.passed:
                print(report, file=sys.stderr)
        why = f"missed its bounds on {failed}" if failed else "missed the decision gate (see the decisions above)"
        print(f"{fmt} REFUSED: {why}; not written (the verified files above were)", file=sys.stderr)
    files = sorted(p.name for p in result.output.iterdir() if p.suffix in (".pt", ".pt2", ".onnx", ".data"))
    print(
        f"artifact: {result.output} ({', '.join(files)}; torch.jit.{result.metadata['export']['path']}, "
        f"{result.metadata['pooling']} pooling, {result.seconds:.1f} s; per-clip numbers in "
        f"{result.output / 'parity.json'})"
    )
    return 1 if result.refused else 0


def _embed(args) -> int:
    import numpy as np
    import torch

    from w2vlab._allocator import keep_freed_memory
    from w2vlab.runtime._artifact import load_artifact

    keep_freed_memory()  # clip after clip: reuse freed tensors' pages (w2vlab._allocator)
    art = load_artifact(args.artifact, args.mode, args.format)
    embeddings = torch.stack([art.embed_file(p) for p in args.audio]).numpy()
    if args.out:
        np.save(args.out, embeddings)
        print(f"{len(args.audio)} embeddings [{embeddings.shape[0]}, {embeddings.shape[1]}] -> {args.out}")
    else:
        for path, e in zip(args.audio, embeddings):
            print(path, " ".join(f"{v:.6f}" for v in e))
    return 0


def _score(args) -> int:
    from w2vlab._allocator import keep_freed_memory
    from w2vlab.runtime._artifact import load_artifact

    keep_freed_memory()
    art = load_artifact(args.artifact, args.mode, args.format)
    print(f"{art.score(art.embed_file(args.a), art.embed_file(args.b)):.6f}")
    return 0


def _info(args) -> int:
    from w2vlab.runtime._artifact import load_artifact

    metadata = read_metadata(args.artifact)  # format tag and schema
    for mode in metadata["artifacts"]:  # each file: embedded metadata and content hash
        for fmt in format_entries(metadata, mode):
            load_artifact(args.artifact, mode, fmt)
    print(json.dumps(metadata, indent=2, sort_keys=True))
    return 0


def _verify(args) -> int:
    from w2vlab._parity import format_bounds
    from w2vlab.export._suite import audio_files, named_suite, verify, without_short
    from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
    from w2vlab.runtime._artifact import load_artifact

    metadata = read_metadata(args.artifact)
    loaded = load_speaker_encoder(args.model_path, args.checkpoint, args.config, pooling=metadata["pooling"])
    fe = feature_extractor_for(loaded)
    cases = named_suite(args.suite, audio_files(args.audio) if args.audio else ())
    cases = without_short(cases, loaded.min_num_samples)  # an x-vector head needs more audio than the extractor
    failed = False
    for mode in metadata["artifacts"]:
        for fmt in format_entries(metadata, mode):
            module = load_artifact(args.artifact, mode, fmt).module
            report = verify(
                mode, module, loaded.model, fe, cases, bounds=format_bounds(fmt, mode), label=f"{mode} {fmt}"
            )
            print(report.to_markdown() if args.table else report.headline())
            failed |= not report.passed
    print("verify: FAIL" if failed else "verify: PASS")
    return 1 if failed else 0


def _doctor(args) -> int:
    from w2vlab.lab._envcheck import main as doctor_main

    return doctor_main(
        (["--json"] if args.json else []) + (["--artifact", str(args.artifact)] if args.artifact else [])
    )


def _score_trials(args) -> int:
    from w2vlab.corpus._norm import ScoreNorm, save_mean
    from w2vlab.corpus._trials import load_embeddings, read_trials

    if args.save_mean and not args.mean_from:
        raise InputError("--save-mean stores the mean of --mean-from COHORT; received no --mean-from")
    norm = ScoreNorm.load(args.mean_from, args.mean, args.as_norm, args.top_n)
    if args.save_mean:
        save_mean(args.save_mean, norm.mean)
    scores = norm.score(load_embeddings(args.embeddings), read_trials(args.trials), skip_missing=args.skip_missing)
    if args.output:
        scores.write(args.output)
    print(json.dumps(scores.metrics(), indent=2) if args.json else scores.to_markdown())
    return 0


def _compare_trials(args) -> int:
    from w2vlab.corpus._norm import ScoreNorm, compare_embeddings_normed
    from w2vlab.corpus._trials import load_embeddings, read_trials

    norms = []
    for i, side in enumerate(("reference", "candidate")):  # each side its own mean and cohort, same model
        sources = [None if pair is None else pair[i] for pair in (args.mean_from, args.mean, args.as_norm)]
        try:
            norms.append(ScoreNorm.load(*sources, top_n=args.top_n))
        except ValueError as e:
            raise InputError(f"{side}: {e}") from e
    comparison = compare_embeddings_normed(
        load_embeddings(args.reference),
        load_embeddings(args.candidate),
        read_trials(args.trials),
        *norms,
        skip_missing=args.skip_missing,
        label=f"{args.reference} vs {args.candidate}",
    )
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else comparison.to_markdown())
    return 0  # it reports; flipped decisions are not an error


def _add_trial_parsers(sub) -> None:
    """``score-trials`` and ``compare-trials`` (w2vlab.corpus._trials)."""
    p = sub.add_parser("score-trials", help="cosine-score a trial list from Kaldi embeddings: EER and minDCF")
    p.add_argument("embeddings", type=Path, help="embed-corpus output directory or embeddings .scp")
    p.add_argument("trials", type=Path, help="VoxCeleb (1|0 enroll test) or WeSpeaker (enroll test target) trials")
    p.add_argument("--output", type=Path, help="write `enroll test score target|nontarget` lines (WeSpeaker's layout)")
    p.add_argument("--json", action="store_true", help="print the metrics as a JSON object")
    p.add_argument("--skip-missing", action="store_true", help="drop trials whose keys have no embedding")
    mean = p.add_mutually_exclusive_group()
    mean.add_argument(
        "--mean-from",
        type=Path,
        metavar="COHORT",
        help="subtract the mean embedding of COHORT (directory or .scp; WeSpeaker: the training set) before scoring",
    )
    mean.add_argument("--mean", type=Path, metavar="FILE.npy", help="subtract this stored [D] mean before scoring")
    p.add_argument("--save-mean", type=Path, metavar="FILE.npy", help="store the --mean-from mean here for --mean")
    p.add_argument(
        "--as-norm",
        type=Path,
        metavar="COHORT",
        help="AS-Norm the scores against COHORT (directory or .scp; WeSpeaker: one mean embedding per training "
        "speaker), mean subtracted like the trials",
    )
    p.add_argument("--top-n", type=int, help="cohort scores per side for --as-norm (default 300, WeSpeaker's recipe)")
    p.set_defaults(func=_score_trials)

    p = sub.add_parser("compare-trials", help="decision-level parity: flipped trials and |score diff| of two scorings")
    p.add_argument("reference", type=Path, help="reference embeddings (directory or .scp), e.g. eager")
    p.add_argument("candidate", type=Path, help="candidate embeddings (directory or .scp), e.g. an export")
    p.add_argument("trials", type=Path)
    p.add_argument("--json", action="store_true", help="print the comparison, flipped trials included, as JSON")
    p.add_argument("--skip-missing", action="store_true", help="drop trials whose keys either side lacks")
    mean = p.add_mutually_exclusive_group()
    mean.add_argument(
        "--mean-from",
        nargs=2,
        type=Path,
        metavar=("REF_COHORT", "CAND_COHORT"),
        help="subtract from each side the mean of the cohort embedded by the same model as that side",
    )
    mean.add_argument(
        "--mean", nargs=2, type=Path, metavar=("REF.npy", "CAND.npy"), help="subtract each side's stored [D] mean"
    )
    p.add_argument(
        "--as-norm",
        nargs=2,
        type=Path,
        metavar=("REF_COHORT", "CAND_COHORT"),
        help="AS-Norm each side against the cohort embedded by the same model as that side",
    )
    p.add_argument("--top-n", type=int, help="cohort scores per side for --as-norm (default 300)")
    p.set_defaults(func=_compare_trials)


def _embed_corpus(args) -> int:
    from w2vlab._allocator import keep_freed_memory
    from w2vlab.corpus._embed import DEFAULT_BATCH_SECONDS, FAILURES, ArtifactEmbedder, embed_corpus

    if (args.artifact is None) == (args.model_path is None):
        raise InputError("give exactly one of --artifact ARTIFACT_DIR or --model-path CKPT")
    if args.model_path is None and (args.checkpoint or args.config):
        raise InputError("--checkpoint and --config go with --model-path, not --artifact")
    if args.model_path is not None and (args.format or args.mode):
        raise InputError("--format and --mode go with --artifact; --model-path runs the eager model on HF features")
    keep_freed_memory()  # batch after batch: reuse freed tensors' pages (w2vlab._allocator)
    engine = args.engine
    if engine == "ray":
        from w2vlab.corpus._ray import require_ray, run_ray

        require_ray()  # says what to install, before any work
        engine = run_ray
    if args.model_path is not None:
        from w2vlab.model._eager import EagerEmbedder

        embedder = EagerEmbedder(args.model_path, args.checkpoint, args.config, pooling=args.pooling)
    else:
        embedder = ArtifactEmbedder(args.artifact, args.mode, args.format or FORMATS[0])
    budget = DEFAULT_BATCH_SECONDS if args.batch_seconds is None else args.batch_seconds
    try:
        summary = embed_corpus(
            args.source,
            args.output,
            embedder,
            batch_seconds=budget,
            workers=args.workers,
            force=args.force,
            engine=engine,
        )
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume into {args.output}", file=sys.stderr)
        return 130
    print(summary.headline())
    if summary.failed:
        print(f"{summary.failed} failed (see {args.output / FAILURES})")
        return 1
    return 0


def _add_embed_corpus(sub) -> None:
    p = sub.add_parser(
        "embed-corpus", help="embed a directory, wav.scp or JSONL manifest into Kaldi ark/scp (resumable)"
    )
    p.add_argument("source", type=Path, help="directory (recursive), Kaldi wav.scp, or NeMo-style .jsonl manifest")
    p.add_argument(
        "--output", required=True, type=Path, help="directory for embeddings.ark/.scp, failures.tsv, summary.json"
    )
    p.add_argument("--artifact", type=Path, help="exported artifact directory")
    p.add_argument("--format", choices=FORMATS, help=f"artifact file format (default {FORMATS[0]})")
    p.add_argument("--mode", choices=MODES, help="artifact mode (default: preprocessed when exported)")
    p.add_argument(
        "--model-path", type=Path, help="eager reference instead: HF folder, model.safetensors or WeSpeaker directory"
    )
    p.add_argument("--checkpoint", type=Path, help="speaker checkpoint (with --model-path)")
    p.add_argument("--config", type=Path, help="override JSON (with --model-path)")
    _add_pooling(p, "with --model-path; ")
    p.add_argument(
        "--batch-seconds",
        type=float,
        help="padded audio per batch: longest clip x clips (default: w2vlab.corpus._embed.DEFAULT_BATCH_SECONDS, 60)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that read and prepare audio (default 0); with --engine ray, actors (default 1)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (DataLoader + this process) or ray (Ray Data actors; RAY_ADDRESS picks a cluster; "
        "needs the [scale] extra)",
    )
    p.add_argument("--force", action="store_true", help="remove a previous run's outputs and start over")
    p.set_defaults(func=_embed_corpus)


def _report(args) -> int:
    from w2vlab.lab._report import write_report

    logging.getLogger("w2vlab.lab._report").setLevel(logging.INFO)  # progress: each notebook's start and finish
    report = write_report(
        args.model_path,
        args.output,
        checkpoint=args.checkpoint,
        config=args.config,
        audio=args.audio,
        notebooks=args.notebooks,
        force=args.force,
    )
    for result in report.results:
        print(result.line())
    print(f"report {'PASS' if report.passed else 'FAIL'} in {report.seconds:.0f} s: {report.index}")
    return 0 if report.passed else 1


def _add_report(sub) -> None:
    from w2vlab.lab._report import DENSE_NOTEBOOKS, NOTEBOOKS, PRUNED_NOTEBOOKS

    p = sub.add_parser(
        "report",
        help="run the export notebooks on a checkpoint (papermill): executed notebooks, "
        "HTML and an index.html with PASS / FAIL / ERROR per notebook",
    )
    p.add_argument("--model-path", required=True, type=Path, help="HF folder, model.safetensors or WeSpeaker directory")
    p.add_argument(
        "--checkpoint", type=Path, help="speaker checkpoint (.safetensors, reference .pth, or a WeSpeaker model_N.pt)"
    )
    p.add_argument("--config", type=Path, help="override JSON merged over the model's config.json")
    p.add_argument(
        "--audio",
        type=Path,
        help="directory of audio files for the notebooks' parity suites (default: the committed fixtures, tests/data)",
    )
    p.add_argument("--output", required=True, type=Path, help="report directory (index.html is its front page)")
    p.add_argument(
        "--notebooks",
        help=f"comma-separated, of {','.join(NOTEBOOKS)} (default: {','.join(DENSE_NOTEBOOKS)}; "
        f"{','.join(PRUNED_NOTEBOOKS)} when the config is pruned)",
    )
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty directory")
    p.set_defaults(func=_report)


def _add_export(sub) -> None:
    """``demo-checkpoint`` and ``export``."""
    p = sub.add_parser("demo-checkpoint", help="write a demo checkpoint: deterministic random weights, or --trained")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--size", choices=DEMO_SIZES, default=DEMO_SIZES[0])
    p.add_argument("--pruned", action="store_true", help="a pruned student with uneven per-layer widths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--trained",
        action="store_true",
        help="the packaged trained demo instead (tells espeak-ng voices apart; see its README.md)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing directory")
    p.set_defaults(func=_demo_checkpoint)

    p = sub.add_parser("export", help="export to a verified TorchScript artifact directory")
    p.add_argument("--model-path", required=True, type=Path, help="HF folder, model.safetensors or WeSpeaker directory")
    p.add_argument(
        "--checkpoint", type=Path, help="speaker checkpoint (.safetensors, reference .pth, or a WeSpeaker model_N.pt)"
    )
    p.add_argument("--config", type=Path, help="override JSON merged over the model's config.json")
    p.add_argument("--mode", choices=(*MODES, "both"), default=MODES[0])
    p.add_argument(
        "--format",
        choices=(*FORMATS, "all"),
        default=FORMATS[0],
        help="also write a torch.export .pt2 ('exported'), an ONNX file ('onnx') or a dynamic-int8 "
        "ONNX copy ('onnx-int8', judged by cosine >= 0.999) or an AOTInductor package compiled for "
        "C++ ('aoti', about a minute, needs a C++ compiler) or the fp32 ONNX program as OpenVINO IR "
        "('openvino', preprocessed mode, needs the [onnx] and [openvino] extras) beside the TorchScript archive, "
        "each verified the same way; the ONNX ones need the [onnx] extra; 'all' is every format but aoti and openvino",
    )
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    _add_pooling(p)
    _add_suite(p)
    p.add_argument(
        "--eval-trials",
        type=Path,
        help="a directory with trials.txt and wav.scp (the trained demo's: tests/data/voices_eval): the onnx-int8 "
        "copy must also keep eager's decisions on those trials, with blocks kept fp32 until it does "
        "(default: none, the copy is written ungated and says so)",
    )
    p.add_argument(
        "--max-flip-percent",
        type=float,
        default=0.1,
        help="decision gate: flipped decisions at each of eager's thresholds (EER, minDCF), in %% of the trials",
    )
    p.add_argument(
        "--max-eer-change", type=float, default=0.1, help="decision gate: |EER(int8) - EER(eager)| in points"
    )
    p.add_argument(
        "--max-kept-blocks",
        type=int,
        help="decision gate: the most blocks the search may keep fp32 before the copy is refused "
        "(default: all but one)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing artifact")
    p.set_defaults(func=_export)


def _add_pooling(p, when: str = "") -> None:
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        help=f"{when}how an odd frame count's half row (the extractor's last, half-padding row) is pooled: "
        "'toolkit' pools it as WeSpeaker and the reference recipe do, 'masked' drops it "
        "(default: as the checkpoint's toolkit does: toolkit for WeSpeaker and reference .pth checkpoints)",
    )


def _add_embed_score(sub) -> None:
    """``embed`` and ``score``: an artifact on audio files."""
    for name, func, help_ in (("embed", _embed, "embed audio files"), ("score", _score, "cosine score of two files")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("artifact", type=Path)
        if name == "embed":
            p.add_argument("audio", nargs="+", type=Path)
            p.add_argument("--out", type=Path, help="write embeddings [N, D] to this .npy")
        else:
            p.add_argument("a", type=Path)
            p.add_argument("b", type=Path)
        p.add_argument("--mode", choices=MODES)
        p.add_argument("--format", choices=FORMATS, default=FORMATS[0])
        p.set_defaults(func=func)


def _add_inspect(sub) -> None:
    """``info``, ``verify`` and ``doctor``."""
    p = sub.add_parser("info", help="validate an artifact and print its metadata")
    p.add_argument("artifact", type=Path)
    p.set_defaults(func=_info)

    p = sub.add_parser("verify", help="re-run the parity suite against the eager model")
    p.add_argument("artifact", type=Path)
    p.add_argument("--model-path", required=True, type=Path)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--config", type=Path)
    p.add_argument("--audio", type=Path, help="directory of extra .wav files for the suite")
    _add_suite(p)
    p.add_argument("--table", action="store_true", help="print the per-clip table")
    p.set_defaults(func=_verify)

    p = sub.add_parser("doctor", help="check the environment and say how to fix what is broken")
    p.add_argument("--json", action="store_true")
    p.add_argument("--artifact", type=Path, help="also compare versions with this artifact's exporter")
    p.set_defaults(func=_doctor)


def build_parser() -> argparse.ArgumentParser:
    """The ``w2vlab`` command line: one subcommand per task, each forwarding to one library call."""
    parser = argparse.ArgumentParser(prog="w2vlab", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level; show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_export(sub)
    _add_embed_score(sub)
    _add_embed_corpus(sub)
    _add_report(sub)
    _add_inspect(sub)
    _add_trial_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except USER_ERRORS as e:
        if args.verbose:
            traceback.print_exc()
        print(f"w2vlab {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
