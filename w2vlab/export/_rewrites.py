"""Faster formulations of two conformer blocks, for the ONNX captures only (exporter side).

Both give the stock blocks' values up to float32 summation order, so they are used where a
format is already verified within the fp32 bounds (ONNX, 1e-5), never for the TorchScript
archives or the ``.pt2`` program, which stay bit-identical to the stock eager model:

* **Relative-key position bias.** ``transformers`` computes
  ``einsum("bhld,lrd->bhlr", q, E[idx])`` over a gathered ``[L, L, D]`` table (64 MB and
  0.5 GFLOP per layer at L = 499, D = 64), although ``idx = clamp(r - l, -left, right) + left``
  takes only ``P = left + right + 1`` values (73).  The same sums are ``(q @ E.T)`` ``[L, P]``
  followed by a gather: :func:`relative_key_bias`.
* **Pointwise convolutions.** The conv block's two ``Conv1d(kernel_size=1)`` run as ``linear``
  on ``[B, T, C]``, so only the depthwise convolution needs channels first.  Their weights are
  sliced in the graph (``weight[..., 0]``), a ``Gather`` the ONNX optimiser folds only under
  8192 elements; the int8 quantiser takes initializers only, so at full size these 48 MatMuls
  stay fp32.  Given to the capture as 2-D weights of their own they were quantised, and the
  int8 call was 23% faster (1.8 s against 2.3 s on a 10 s clip), but the 35 ms clip fell to
  cosine 0.9959 (bound 0.998): the export refused that file.

:func:`faster_blocks` sets these as instance ``forward`` methods of one model for the duration
of a capture and removes them after; the ``transformers`` classes are never touched.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

ATTENTION = "relative-key position bias as q @ E.T + gather"
POINTWISE = "conv block's pointwise Conv1d(k=1) as linear"


def relative_key_bias(query: Tensor, table: Tensor, left: int, right: int) -> Tensor:
    """``einsum("bhld,lrd->bhlr", query, table[clamp(r - l, -left, right) + left])`` without the table.

    Args:
        query (Tensor): shape ``(B, H, L, D)``
        table (Tensor): the distance embedding, shape ``(left + right + 1, D)``

    Returns:
        Tensor: shape ``(B, H, L, L)``
    """
    batch, heads, length, _ = query.shape
    positions = table.size(0)
    scores = torch.matmul(query, table.t())  # (B, H, L, P)
    pos = torch.arange(length, device=query.device)
    idx = (pos[None, :] - pos[:, None]).clamp(-left, right) + left  # (L, L): [l, r] -> table row
    flat = (pos[:, None] * positions + idx).reshape(-1)  # (L * L,) into the (L * P) axis
    # Gathered as rows of B * H values, heads last: ONNX Runtime's Gather copies one block per
    # index, and 4-byte blocks (heads first) ran at half the speed (22 -> 11 ms a layer at L = 499,
    # the softmax included); the transposes cost less than that.
    rows = scores.permute(2, 3, 0, 1).reshape(length * positions, batch * heads)  # (L * P, B * H)
    bias = rows.index_select(0, flat)  # (L * L, B * H)
    return bias.reshape(length, length, batch, heads).permute(2, 3, 0, 1)


def _attention_forward(
    self: nn.Module,
    hidden_states: Tensor,
    attention_mask: Tensor | None = None,
    relative_position_embeddings: Tensor | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """``Wav2Vec2BertSelfAttention.forward`` (relative_key, eager attention, inference) with
    :func:`relative_key_bias`: hidden [B, L, C] (+ additive mask [B, 1, L, L]) -> ([B, L, C], None)."""
    batch, length, _ = hidden_states.shape
    shape = (batch, length, -1, self.head_size)
    query = self.linear_q(hidden_states).view(shape).transpose(1, 2)  # (B, H, L, D)
    key = self.linear_k(hidden_states).view(shape).transpose(1, 2)
    value = self.linear_v(hidden_states).view(shape).transpose(1, 2)
    weights = torch.matmul(query, key.transpose(2, 3)) * self.scaling  # (B, H, L, L)
    bias = relative_key_bias(
        query, self.distance_embedding.weight, self.left_max_position_embeddings, self.right_max_position_embeddings
    )
    weights = weights + bias * self.scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    out = torch.matmul(torch.softmax(weights, dim=-1), value)  # (B, H, L, D)
    return self.linear_out(out.transpose(1, 2).reshape(batch, length, -1)), None


def _conv_forward(self: nn.Module, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """``Wav2Vec2BertConvolutionModule.forward`` (inference) with its pointwise convolutions as
    ``linear``: [B, T, C] (+ mask [B, T]) -> [B, T, C]."""
    hidden = self.layer_norm(hidden_states)
    if attention_mask is not None:
        hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), 0.0)
    hidden = nn.functional.glu(nn.functional.linear(hidden, self.pointwise_conv1.weight[..., 0]), dim=-1)  # (B, T, C)
    kernel = self.depthwise_conv.kernel_size[0]
    hidden = self.depthwise_conv(nn.functional.pad(hidden.transpose(1, 2), (kernel - 1, 0)))  # (B, C, T), causal
    hidden = self.activation(self.depthwise_layer_norm(hidden.transpose(1, 2)))  # (B, T, C)
    return nn.functional.linear(hidden, self.pointwise_conv2.weight[..., 0])


def _targets(model: nn.Module) -> Iterator[tuple[nn.Module, str, Any]]:
    """(module, rewrite, faster forward) for every block of ``model`` that has one."""
    for module in model.modules():
        kind = type(module).__name__
        if kind == "Wav2Vec2BertSelfAttention" and getattr(module, "position_embeddings_type", None) == "relative_key":
            yield module, ATTENTION, _attention_forward
        elif kind == "Wav2Vec2BertConvolutionModule":
            yield module, POINTWISE, _conv_forward


@contextlib.contextmanager
def faster_blocks(model: nn.Module) -> Iterator[dict[str, int]]:
    """Within the block, ``model``'s relative-key attention and conv blocks run the rewrites above
    (instance ``forward`` overrides, removed on exit); yields how many blocks each rewrite took."""
    if model.training:
        raise ValueError("faster_blocks rewrites inference only (no dropout); call model.eval() first")
    patched, counts = [], {}
    try:
        for module, rewrite, forward in _targets(model):
            module.forward = types.MethodType(forward, module)
            patched.append(module)
            counts[rewrite] = counts.get(rewrite, 0) + 1
        yield counts
    finally:
        for module in patched:
            del module.forward
