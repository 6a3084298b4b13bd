"""The benchmark harness runs end to end on the tiny model (fields only: speed is never asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from w2vlab import bench
from w2vlab.demo import build_demo_model


def test_quick_tiny_run_produces_every_field(tmp_path, capsys):
    assert bench.main(["--size", "tiny", "--quick", "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "b.json").read_text())
    assert result["threads"] == 2 and result["size"] == "tiny"
    expected = {"export_peak_rss", "frontend_vs_hf_10s", "frontend_vs_hf_60s", "torchscript_vs_eager_10s",
                "waveform_artifact_vs_hf_plus_eager_10s", "encoder_flops_fraction", "time_to_first_embedding",
                "padded_batch_8_vs_one_by_one", "formats_vs_eager_10s", "fastest_artifact_vs_eager_10s"}
    assert set(result["metrics"]) == expected
    for name, row in result["metrics"].items():
        assert {"target", "met"} <= set(row), name
        if "ratio" in row:
            assert row["ratio"] > 0, name
    assert result["metrics"]["torchscript_vs_eager_10s"]["max_abs_diff"] == 0.0  # parity of what was timed
    formats = result["metrics"]["formats_vs_eager_10s"]["formats"]
    assert {"torchscript", "exported"} <= set(formats) and result["metrics"]["formats_vs_eager_10s"]["met"]
    assert formats["exported"]["max_abs_diff"] == 0.0
    assert set(result["metrics"]["encoder_flops_fraction"]["fraction_of_best"]) == {"eager", *formats}
    assert set(result["artifact_sizes"]) == {"w2vbert_speaker_script_preprocessed.pt", "w2vbert_speaker_script_waveform.pt"}


@pytest.mark.parametrize("pruned", [False, True])
def test_flop_formula_agrees_with_torch_flop_counter(pruned):
    """The analytic count (used for FLOP/s) against torch's own operator-level FLOP counter."""
    model, _ = build_demo_model(pruned=pruned)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 300, 160))
    counted = counter.get_total_flops()
    assert bench.encoder_flops(bench.flop_facts(model), frames=300) == pytest.approx(counted, rel=0.05)
