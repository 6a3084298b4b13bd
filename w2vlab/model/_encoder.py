"""The speaker encoder: HF ``Wav2Vec2BertModel`` -> MFA adapters -> masked ASP -> bottleneck.

The encoder is stock ``transformers``; pruned students (per-layer head counts, FFN and conv
widths, absent blocks) are built by resizing the stock per-layer modules, so weight names
stay identical to ``Wav2Vec2BertModel`` and stock checkpoints load unchanged.

The encoder stack is run by :meth:`SpeakerEncoder.hidden_states` rather than through
``output_hidden_states=True``: the loop is explicit, traceable, independent of how a given
transformers release records hidden states, and it always applies the attention mask.
Pooling (``HeadConfig.pooling``).  The extractor pads an odd frame count by one frame, so a
clip's last stacked row is then half padding and its mask is 0.  The toolkits (WeSpeaker, the
reference recipe) mask the encoder with that mask and pool over every row of the clip, the half
row included: ``"toolkit"`` does the same, and in a padded batch pools each clip's own rows
(``clip_rows``), so a clip gets its batch-1 embedding.  ``"masked"`` pools the rows whose mask is 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

from w2vlab.model._config import HeadConfig, is_pruned


class AbsentBlock(nn.Module):
    """Stands in for a pruned-away attention or feed-forward block: contributes zero.

    The stock conformer layer adds each block's output to the residual, so a block that
    returns zeros is exactly a block that is not there; it has no parameters, so the
    checkpoint has no keys for it.
    """

    def __init__(self, returns_tuple: bool = False):
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        zeros = torch.zeros_like(hidden_states)
        return (zeros, None) if self.returns_tuple else zeros


def _resize_layer(layer: nn.Module, config: Wav2Vec2BertConfig, i: int) -> None:
    """Give conformer layer ``i`` the widths of the pruning fields (new modules, random init)."""
    hidden = config.hidden_size
    head_size = hidden // config.num_attention_heads
    attn = layer.self_attn
    if not config.use_attention[i]:
        layer.self_attn_layer_norm = nn.Identity()
        layer.self_attn = AbsentBlock(returns_tuple=True)
    elif config.num_attention_heads_group[i] != attn.num_heads:
        inner = config.num_attention_heads_group[i] * head_size
        attn.num_heads = config.num_attention_heads_group[i]
        attn.linear_q, attn.linear_k, attn.linear_v = (nn.Linear(hidden, inner) for _ in range(3))
        attn.linear_out = nn.Linear(inner, hidden)
    for j, name in enumerate(("ffn1", "ffn2")):
        if not config.use_feed_forward[i][j]:
            setattr(layer, f"{name}_layer_norm", nn.Identity())
            setattr(layer, name, AbsentBlock())
            continue
        width = config.intermediate_size_group[i][j]
        ffn = getattr(layer, name)
        if ffn.intermediate_dense.out_features != width:
            ffn.intermediate_dense = nn.Linear(hidden, width)
            ffn.output_dense = nn.Linear(width, hidden)
    channels = config.conv_group[i][1]
    conv = layer.conv_module
    if conv.depthwise_conv.out_channels != channels:
        kernel = config.conv_depthwise_kernel_size
        conv.pointwise_conv1 = nn.Conv1d(hidden, 2 * channels, 1, bias=False)
        conv.depthwise_conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
        conv.depthwise_layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        conv.pointwise_conv2 = nn.Conv1d(channels, hidden, 1, bias=False)


def build_encoder(config: Wav2Vec2BertConfig | Mapping[str, Any]) -> Wav2Vec2BertModel:
    """A randomly initialised ``Wav2Vec2BertModel``, resized per layer if ``config`` is pruned.

    Pass a config normalised by :func:`w2vlab.model._config.normalise_pruning`.  Attention runs the
    "eager" implementation: the relative-key position bias is added the same way on every
    export path (TorchScript, torch.export, ONNX).
    """
    if not isinstance(config, Wav2Vec2BertConfig):
        config = Wav2Vec2BertConfig(**dict(config))
    config._attn_implementation = "eager"
    model = Wav2Vec2BertModel(config)
    # No training loss here; setting it stops TorchScript's attribute probing from logging
    # "loss_type=None was set in the config but it is unrecognized" on every export.
    model.loss_function = None
    if is_pruned(config.to_dict()):
        for i, layer in enumerate(model.encoder.layers):
            _resize_layer(layer, config, i)
    return model.eval()


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling with a frame mask: [B, T, F] -> [B, 2F].

    ``attention`` keeps the reference layout (Conv1d, ReLU, BatchNorm1d, Conv1d) so its keys
    are ``attention.0/2/3.*``; the softmax over time is applied here, after padded frames
    are set to -inf, so they get exactly zero weight.
    """

    def __init__(self, in_dim: int, channels: int = 128):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(in_dim, channels, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            nn.Conv1d(channels, in_dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, F, T)
        logits = self.attention(x)  # (B, F, T)
        if mask is not None:
            logits = logits.masked_fill(~mask.bool()[:, None, :], float("-inf"))
        w = torch.softmax(logits, dim=2)  # (B, F, T), zero on padded frames
        mu = torch.sum(x * w, dim=2)  # (B, F)
        sg = torch.sqrt((torch.sum(x * x * w, dim=2) - mu * mu).clamp(min=1e-5))  # (B, F)
        return torch.cat([mu, sg], dim=1)  # (B, 2F)


class SpeakerEncoder(nn.Module):
    """W2V-BERT 2.0 speaker encoder: input features [B, T, 160] (+ mask [B, T]) -> [B, embedding_dim].

    State-dict keys: ``encoder.*`` (stock ``Wav2Vec2BertModel``), ``adapter_layers.*``,
    ``pooling.attention.*``, ``bottleneck.*``.
    """

    def __init__(self, encoder: Wav2Vec2BertModel, head: HeadConfig = HeadConfig()):
        super().__init__()
        self.encoder = encoder
        self.head = head
        d_model = encoder.config.hidden_size
        self.n_mfa_layers = head.resolved_mfa_layers(encoder.config.num_hidden_layers)
        self.adapter_layers = nn.ModuleList(
            nn.Sequential(
                nn.Linear(d_model, head.adapter_dim),
                nn.LayerNorm(head.adapter_dim),
                nn.ReLU(),
                nn.Linear(head.adapter_dim, head.adapter_dim),
            )
            for _ in range(self.n_mfa_layers)
        )
        feat_dim = head.adapter_dim * self.n_mfa_layers
        self.pooling = AttentiveStatsPool(feat_dim, head.attention_channels)
        self.bottleneck = nn.Linear(2 * feat_dim, head.embedding_dim)

    @property
    def feature_dim(self) -> int:
        return self.encoder.config.feature_projection_input_dim

    @property
    def embedding_dim(self) -> int:
        return self.head.embedding_dim

    def hidden_states(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Embeddings output + every layer's output: ``num_hidden_layers + 1`` tensors [B, T, H]."""
        hidden, _ = self.encoder.feature_projection(input_features)  # (B, T, H)
        attn_bias = None
        if attention_mask is not None:
            keep = attention_mask.bool()
            hidden = hidden.masked_fill(~keep[..., None], 0.0)
            # additive bias on attention logits: 0 for real keys, dtype-min for padded ones
            attn_bias = (~keep)[:, None, None, :].to(hidden.dtype) * torch.finfo(hidden.dtype).min  # (B, 1, 1, T)
        positions = self.encoder.encoder.embed_positions
        rel_pos = positions(hidden) if positions is not None else None
        states = [hidden]
        for layer in self.encoder.encoder.layers:
            out = layer(
                hidden,
                attention_mask=attn_bias,
                relative_position_embeddings=rel_pos,
                conv_attention_mask=attention_mask,
            )
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple
            states.append(hidden)
        return states

    @property
    def pooling_choice(self) -> str:
        """``"toolkit"`` or ``"masked"`` (:data:`w2vlab._contract.POOLINGS`)."""
        return self.head.pooling

    def pooling_mask(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None, clip_rows: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The rows pooled [B, T] (``None``: every row).  Toolkit: each clip's ``clip_rows`` [B] (half row
        included), or every row without them, as a toolkit pools one clip; masked: ``attention_mask``."""
        if self.head.pooling == "masked":
            return attention_mask
        if clip_rows is None:
            return None
        rows = torch.arange(input_features.size(1), device=input_features.device)  # (T,)
        return rows[None, :] < clip_rows.to(input_features.device)[:, None]  # (B, T)

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        clip_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_features [B, T, 160] float32, attention_mask [B, T] (1 = real), clip_rows [B] (toolkit
        pooling: each clip's rows, half row included) -> embeddings [B, embedding_dim]."""
        states = self.hidden_states(input_features, attention_mask)[-self.n_mfa_layers :]
        x = torch.cat([adapter(h) for adapter, h in zip(self.adapter_layers, states)], dim=-1)  # (B, T, n*a)
        pooled = self.pooling(x, self.pooling_mask(input_features, attention_mask, clip_rows))  # (B, 2 * n*a)
        return self.bottleneck(pooled)  # (B, embedding_dim)


def count_parameters(module: nn.Module) -> int:
    """The number of parameter elements of ``module``, every parameter counted once."""
    return sum(p.numel() for p in module.parameters())
