"""The FLOP model of the encoder and the GEMM ceilings its FLOP/s are measured against."""

from __future__ import annotations

from typing import Any

import torch

from w2vlab.bench._onnx import onnx_matmul
from w2vlab.bench._timing import median_seconds


def encoder_flops(facts: dict[str, Any], frames: int) -> float:
    """FLOPs of one forward pass over ``frames`` stacked frames (batch 1).

    2·T·(weights of every Linear/Conv1d) + attention: per layer with attention,
    QKᵀ, AV and the relative-key bias each cost 2·T²·(heads·head_size).
    """
    return 2.0 * frames * facts["linear_conv_weights"] + sum(
        3 * 2 * frames**2 * heads * facts["head_size"] for heads in facts["heads"]
    )


def flop_facts(model: torch.nn.Module) -> dict[str, Any]:
    """What :func:`encoder_flops` needs: weights of Linear/Conv1d layers, head size, heads per attention layer."""
    cfg = model.encoder.config
    heads = getattr(cfg, "num_attention_heads_group", None) or [cfg.num_attention_heads] * cfg.num_hidden_layers
    use = getattr(cfg, "use_attention", None) or [True] * cfg.num_hidden_layers
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)))
    return {
        "linear_conv_weights": weights,
        "head_size": cfg.hidden_size // cfg.num_attention_heads,
        "heads": [h for h, u in zip(heads, use) if u],
    }


def gemm_ceilings(rows: int, inner: int, outer: int, threads: int, repeats: int = 5) -> dict[str, float]:
    """FLOP/s of one ``[rows, inner] x [inner, outer]`` GEMM, the model's feed-forward shape: fp32 in
    ``torch.mm``, numpy (BLAS) and ONNX Runtime's ``MatMul`` (with the ``[onnx]`` extra), ``fp32``
    being the best of them; bf16 (``torch.mm``); int8 (``torch._int_mm``, int32 accumulation)."""
    a, b = torch.randn(rows, inner), torch.randn(inner, outer)
    flops = 2.0 * rows * inner * outer
    an, bn = a.numpy(), b.numpy()
    out = {
        "fp32_torch": flops / median_seconds(lambda: torch.mm(a, b), repeats),
        "fp32_numpy": flops / median_seconds(lambda: an @ bn, repeats),
    }
    session = onnx_matmul(bn, threads)
    if session is not None:
        out["fp32_onnxruntime"] = flops / median_seconds(lambda: session.run(None, {"a": an}), repeats)
    out["fp32"] = max(out.values())
    ab, bb = a.bfloat16(), b.bfloat16()
    out["bf16"] = flops / median_seconds(lambda: torch.mm(ab, bb), repeats)
    rows8 = max(rows, 17)  # _int_mm needs more than 16 rows
    a8 = torch.randint(-128, 127, (rows8, inner), dtype=torch.int8)
    b8 = torch.randint(-128, 127, (inner, outer), dtype=torch.int8)
    try:
        out["int8"] = 2.0 * rows8 * inner * outer / median_seconds(lambda: torch._int_mm(a8, b8), repeats)
    except RuntimeError as e:  # shapes or a build without the int8 kernel
        out["int8_error"] = str(e).splitlines()[0]
    return out


def ceiling_for(runner: str) -> str:
    """Which of :func:`gemm_ceilings`' entries bounds ``runner``'s GEMMs."""
    return "int8" if "int8" in runner else "bf16" if "bf16" in runner else "fp32"
