"""w2vlab.export._rewrites (the ONNX captures' faster blocks) against the stock transformers blocks."""

from __future__ import annotations

import pytest
import torch

from w2vlab.export._rewrites import ATTENTION, POINTWISE, faster_blocks, relative_key_bias
from w2vlab.model._checkpoint import load_speaker_encoder


def stock_bias(query: torch.Tensor, table: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """transformers' formulation, written out: gather the [L, L, D] table, then einsum."""
    length = query.shape[2]
    distance = torch.arange(length)[None, :] - torch.arange(length)[:, None]  # (L, L): r - l
    gathered = table[distance.clamp(-left, right) + left]  # (L, L, D)
    return torch.einsum("bhld,lrd->bhlr", query, gathered)


@pytest.mark.parametrize("length", [1, 2, 9, 73, 150])
@pytest.mark.parametrize("left,right", [(64, 8), (3, 5), (0, 0)])
def test_relative_key_bias_equals_the_gathered_einsum(length, left, right):
    gen = torch.Generator().manual_seed(length + left)
    query = torch.randn(2, 3, length, 16, generator=gen)
    table = torch.randn(left + right + 1, 16, generator=gen)
    got, want = relative_key_bias(query, table, left, right), stock_bias(query, table, left, right)
    assert got.shape == (2, 3, length, length)
    assert torch.allclose(got, want, rtol=0, atol=1e-5), (got - want).abs().max()


@pytest.mark.parametrize("which", ["tiny", "pruned"])
def test_faster_blocks_match_the_stock_model_and_are_removed(which, tiny_dir, pruned_dir):
    model = load_speaker_encoder(tiny_dir if which == "tiny" else pruned_dir).model
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 120, model.feature_dim, generator=gen)
    mask = torch.ones(3, 120, dtype=torch.long)
    mask[1, 70:] = 0
    mask[2, 9:] = 0
    with torch.no_grad():
        stock = model(x, mask)
        with faster_blocks(model) as counts:
            fast = model(x, mask)
            patched = [m for m in model.modules() if "forward" in vars(m)]
        after = model(x, mask)
    layers = model.encoder.config.num_hidden_layers
    attention = sum(type(m).__name__ == "Wav2Vec2BertSelfAttention" for m in model.modules())
    assert counts == {ATTENTION: attention, POINTWISE: layers} and len(patched) == attention + layers
    assert (fast - stock).abs().max() <= 1e-6
    assert torch.equal(after, stock) and not [m for m in model.modules() if "forward" in vars(m)]


def test_faster_blocks_refuse_training_mode_and_clean_up_on_error(tiny_dir):
    model = load_speaker_encoder(tiny_dir).model
    with pytest.raises(ValueError, match="inference only"):
        with faster_blocks(model.train()):
            pass
    model.eval()
    with pytest.raises(RuntimeError, match="boom"):
        with faster_blocks(model):
            raise RuntimeError("boom")
    assert not [m for m in model.modules() if "forward" in vars(m)]
