"""Golden slice: absolute values stored in ``tests/data/golden_slice.json``, checked at atol 1e-4.

Every other parity test is relative (artifact vs eager); these catch a torch / transformers /
numpy upgrade or a code change that moves eager and the artifacts together.  The model is the
tiny demo structure with numpy-seeded weights (``scripts/make_golden_slice.py::seed_weights``,
independent of torch's RNG), run on ``tests/data/speech_en_m3_2s.wav``:

* HF ``input_features`` [1, 99, 160] and w2vlab's torch frontend, 8 values each;
* the eager embedding [1, 32]: first 8 values and L2 norm;
* both exported TorchScript artifacts (preprocessed, waveform) on the same file, vs the eager values;
* on ``speech_en_m3_1p01s.wav`` (99 frames: the extractor's last row is half padding), the
  embedding with each pooling choice, eager and exported (both modes), vs the stored values.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_golden_slice", ROOT / "scripts" / "make_golden_slice.py")
golden_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_script)

GOLDEN = json.loads(golden_script.GOLDEN.read_text())
ATOL = 1e-4  # absolute, every stored value (features are O(1), the embedding O(0.01..1))


def assert_golden(name: str, got, want, atol: float = ATOL, labels=None) -> None:
    """Raise with every moved entry of ``name`` (stored -> now) and how to respond, unless |got - want| <= atol.

    ``labels``: one per entry of ``want`` (default: its flat position), e.g. the (row, column) of a feature.
    """
    __tracebackhide__ = True
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape == want.shape and np.all(np.abs(got - want) <= atol):
        return
    if got.shape != want.shape:
        moved = f"{want.tolist()} -> {got.tolist()}"
    else:
        bad = np.flatnonzero(np.abs(got - want).ravel() > atol)
        labels = labels or [f"[{i}]" for i in range(want.size)]
        moved = "; ".join(
            f"{labels[i]} {want.flat[i]:.7g} -> {got.flat[i]:.7g} (diff {got.flat[i] - want.flat[i]:+.2e})" for i in bad
        )
    stored = GOLDEN["provenance"]["versions"]
    running = golden_script.versions()
    raise AssertionError(
        f"golden value {name} moved beyond atol {atol:g}: {moved}.\n"
        f"Stored with {stored}; running {running}.\n"
        f"Re-run scripts/make_golden_slice.py ONLY if this change is understood (a deliberate upgrade or "
        f"modelling change); otherwise it is a regression."
    )


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory) -> Path:
    return golden_script.write_golden_checkpoint(
        tmp_path_factory.mktemp("golden") / "tiny", GOLDEN["provenance"]["seed"]
    )


@pytest.fixture(scope="module")
def measured(golden_dir) -> dict:
    return golden_script.measure(golden_dir, golden_script.FIXTURE, GOLDEN["hf_features"]["index"])


def _export(golden_dir: Path, out: Path, pooling: str) -> Path:
    from w2vlab.export._pipeline import export
    from w2vlab.export._suite import build_suite

    export(
        golden_dir,
        out,
        modes=("preprocessed", "waveform"),
        cases=build_suite(lengths=(16000, 16160), batches=()),
        progress=False,
        pooling=pooling,
    )
    return out


@pytest.fixture(scope="module")
def artifact_dirs(golden_dir, tmp_path_factory) -> dict[str, Path]:
    """pooling -> the golden checkpoint exported with it."""
    root = tmp_path_factory.mktemp("golden_art")
    return {pooling: _export(golden_dir, root / pooling, pooling) for pooling in ("masked", "toolkit")}


@pytest.fixture(scope="module")
def artifact_dir(artifact_dirs) -> Path:
    return artifact_dirs["masked"]  # w2vlab's own head: the default


def test_fixture_unchanged():
    from w2vlab.model._checkpoint import sha256_file

    assert sha256_file(golden_script.ODD_FIXTURE) == GOLDEN["provenance"]["odd_fixture_sha256"]
    assert sha256_file(golden_script.FIXTURE) == GOLDEN["provenance"]["fixture_sha256"], (
        f"{golden_script.FIXTURE.name} changed since the golden slice was made; "
        f"re-run scripts/make_golden_slice.py only if the new fixture is intended"
    )


@pytest.mark.parametrize("part", ["hf_features", "torch_features"])
def test_features(measured, part):
    """HF extractor and w2vlab's torch frontend: shape [1, 99, 160] and the values at the stored (row, column)s."""
    where = [f"(row {i}, col {j})" for i, j in GOLDEN["hf_features"]["index"]]
    assert_golden(f"{part}.shape", measured[part]["shape"], GOLDEN[part]["shape"])
    if part == "hf_features":
        assert_golden("hf_features.valid_rows", measured[part]["valid_rows"], GOLDEN[part]["valid_rows"])
    assert_golden(f"{part}.values", measured[part]["values"], GOLDEN[part]["values"], labels=where)


def test_torch_frontend_matches_hf(measured):
    diff = measured["torch_features"]["max_abs_diff_vs_hf"]
    assert diff <= ATOL, f"w2vlab's torch frontend differs from HF by up to {diff:.3g} on the whole [1, 99, 160] map"


def test_eager_embedding(measured):
    emb = measured["embedding"]
    assert emb["all_finite"] and emb["spread"] > 1e-3, f"degenerate embedding: {emb}"
    for key in ("shape", "first", "l2_norm"):
        assert_golden(f"embedding.{key}", emb[key], GOLDEN["embedding"][key])


@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
def test_artifact_embedding(artifact_dir, mode):
    from w2vlab import load_artifact

    emb = load_artifact(artifact_dir, mode).embed_file(golden_script.FIXTURE)  # [D]
    want = GOLDEN["embedding"]
    assert_golden(f"{mode} artifact embedding.shape", [1, *emb.shape], want["shape"])
    assert_golden(f"{mode} artifact embedding.first", emb[: len(want["first"])].numpy(), want["first"])
    assert_golden(f"{mode} artifact embedding.l2_norm", float(emb.norm()), want["l2_norm"])


@pytest.fixture(scope="module")
def measured_odd(golden_dir) -> dict:
    return golden_script.measure_odd(golden_dir)


def test_odd_clip_has_a_half_row(measured_odd):
    assert_golden("odd_clip.shape", measured_odd["shape"], GOLDEN["odd_clip"]["shape"])
    assert measured_odd["valid_rows"] == GOLDEN["odd_clip"]["valid_rows"] == measured_odd["shape"][1] - 1


@pytest.mark.parametrize("pooling", ["toolkit", "masked"])
def test_odd_clip_eager_embedding(measured_odd, pooling):
    for key in ("first", "l2_norm"):
        assert_golden(f"odd_clip.{pooling}.{key}", measured_odd[pooling][key], GOLDEN["odd_clip"][pooling][key])


def test_toolkit_pooling_equals_hf_forward_restated(measured_odd):
    """Toolkit pooling equals WeSpeaker's computation restated on HF's own encoder forward."""
    assert measured_odd["restated_rel_diff"] <= 1e-5, measured_odd["restated_rel_diff"]


@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
@pytest.mark.parametrize("pooling", ["toolkit", "masked"])
def test_odd_clip_artifact_embedding(artifact_dirs, pooling, mode):
    from w2vlab import load_artifact

    art = load_artifact(artifact_dirs[pooling], mode)
    assert art.pooling == pooling
    emb = art.embed_file(golden_script.ODD_FIXTURE)  # [D]
    want = GOLDEN["odd_clip"][pooling]
    assert_golden(f"odd_clip {pooling} {mode} artifact first", emb[: len(want["first"])].numpy(), want["first"])
    assert_golden(f"odd_clip {pooling} {mode} artifact l2_norm", float(emb.norm()), want["l2_norm"])
