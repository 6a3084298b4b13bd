#!/usr/bin/env python
"""Export a W2V-BERT 2.0 speaker encoder to TorchScript (the seed's flags, forwarded to w2vlab)."""

import argparse
import sys

from w2vlab.cli import main


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-path", required=True, help="HF folder (config.json + model.safetensors)")
    parser.add_argument("--output", default="artifacts/w2vbert_speaker", help="artifact directory")
    parser.add_argument("--checkpoint", help="speaker checkpoint (.safetensors or reference .pth)")
    parser.add_argument("--config", help="override JSON merged over the model's config.json")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--preprocess", action="store_true", help="artifact takes HF input features (default)")
    mode.add_argument("--waveform", action="store_true", help="artifact takes raw 16 kHz audio")
    mode.add_argument("--both", action="store_true", help="write both artifacts")
    parser.add_argument("--force", action="store_true", help="replace an existing artifact")
    return parser.parse_args(argv)


def to_cli(args: argparse.Namespace) -> list[str]:
    mode = "both" if args.both else "waveform" if args.waveform else "preprocessed"
    argv = ["export", "--model-path", args.model_path, "--output", args.output, "--mode", mode]
    for flag in ("checkpoint", "config"):
        if getattr(args, flag):
            argv += [f"--{flag}", getattr(args, flag)]
    return argv + (["--force"] if args.force else [])


if __name__ == "__main__":
    sys.exit(main(to_cli(get_args())))
