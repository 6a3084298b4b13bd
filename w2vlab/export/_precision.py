"""Reduced-precision candidates that the benchmark measures side by side (``--only reduced_precision``).

Each recipe builds runners ``features [1, T, 160] -> embedding [1, D]`` from the demo checkpoint
or from the artifact's files.  :func:`w2vlab.bench._child.precision_candidate` runs one recipe per
process, so that its build time and peak RSS are its own.  None of them is written as an
artifact here: the shipped reduced-precision format is ``onnx-int8`` (see
:func:`w2vlab.export._int8.quantize_onnx`), and these numbers say whether another recipe should
replace it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]

# recipe -> what it is, in words (the JSON repeats this beside each row)
RECIPES: dict[str, str] = {
    "onnx-int8": "the artifact's fp32 ONNX program (rewritten blocks) quantised as onnxruntime's "
    "quantize_dynamic does (w2vlab.export._int8): MatMul weights int8 per output channel (the conv "
    "blocks' pointwise convolutions kept fp32), activations "
    "quantised per call; sessions with intra-op spinning off (as shipped) and on",
    "bf16": "model.to(torch.bfloat16), run eagerly; features cast to bf16, embedding back to fp32",
    "bf16-inductor": "torch.compile(model.to(torch.bfloat16), dynamic=True) with inductor freezing; "
    "the build includes compiling for the 10 s clip",
}


class CastRunner(nn.Module):
    """``module`` on inputs cast to ``dtype``, returning float32: ``[1, T, 160] -> [1, D]``."""

    def __init__(self, module: Callable[..., torch.Tensor], dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.module(features.to(self.dtype)).float()


def bf16_copy(model: nn.Module) -> nn.Module:
    """A bf16 copy of ``model`` in eval mode (``model`` itself is left in fp32)."""
    import copy

    return copy.deepcopy(model).to(torch.bfloat16).eval()


def build_onnx_int8(artifact: Path, work: Path, threads: int, feature_dim: int) -> dict[str, Runner]:
    """Quantise the artifact's preprocessed ONNX file into ``work``; runners with spinning off and on."""
    from w2vlab._contract import FILES
    from w2vlab.export._int8 import quantize_onnx
    from w2vlab.runtime._entry import PreprocessedSpeakerEncoder
    from w2vlab.runtime._loaders import OnnxRuntimeCore, onnx_session

    path = work / "candidate_int8.onnx"
    quantize_onnx(artifact / FILES["onnx", "preprocessed"], path)
    return {
        name: PreprocessedSpeakerEncoder(OnnxRuntimeCore(onnx_session(path, threads, spinning)), feature_dim)
        for name, spinning in (("onnx-int8", False), ("onnx-int8-spin", True))
    }


def build_bf16(model: nn.Module) -> dict[str, Runner]:
    return {"bf16": CastRunner(bf16_copy(model), torch.bfloat16)}


def build_bf16_inductor(model: nn.Module, example: torch.Tensor) -> dict[str, Runner]:
    """Compile the bf16 copy with inductor (freezing on) and run it once on ``example`` so the build
    includes the compile.  Freezing is inductor's process-wide setting: the benchmark builds this
    recipe in a child process of its own."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    runner = CastRunner(torch.compile(bf16_copy(model), dynamic=True), torch.bfloat16)
    with torch.inference_mode():
        runner(example)
    return {"bf16-inductor": runner}


def build(
    recipe: str, model: nn.Module | None, artifact: Path, work: Path, threads: int, example: torch.Tensor
) -> tuple[dict[str, Runner], float]:
    """The runners of ``recipe`` and the seconds building them took (``model``, the fp32 eager
    model, is not used by ``onnx-int8``).

    Raises ``ValueError`` naming the recipes for an unknown one.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}")
    start = time.perf_counter()
    if recipe == "onnx-int8":
        runners = build_onnx_int8(artifact, work, threads, example.shape[-1])
    elif model is None:
        raise ValueError(f"recipe {recipe!r} builds from the fp32 model; received none")
    elif recipe == "bf16":
        runners = build_bf16(model)
    else:
        runners = build_bf16_inductor(model, example)
    return runners, time.perf_counter() - start


def load_inputs(path: Path) -> dict[str, Any]:
    """What the parent saved with :func:`save_inputs`: ``clip10`` and named feature tensors."""
    import numpy as np

    with np.load(path) as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


def save_inputs(path: Path, features: dict[str, torch.Tensor]) -> None:
    """Each ``[1, T, 160]`` feature tensor under its name (``clip10`` is the one timed)."""
    import numpy as np

    np.savez(path, **{name: x.numpy() for name, x in features.items()})
