"""The Ray Data engine against the local engine on the committed corpus: same keys, same
embeddings within 1e-5, same failures, same resume rules.  A local Ray instance is started here."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from w2vlab.corpus._embed import ArtifactEmbedder, embed_corpus
from w2vlab.corpus._trials import load_embeddings
from w2vlab.export._pipeline import export
from w2vlab.export._suite import build_suite

CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the [scale] extra (ray[data]) is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The committed corpus's wav.scp plus one corrupt file, with paths made absolute."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really")
    lines = [
        f"{key} {(CORPUS / rel).resolve()}"
        for key, rel in (line.split(maxsplit=1) for line in (CORPUS / "wav.scp").read_text().splitlines())
    ]
    (root / "wav.scp").write_text("\n".join([*lines, f"zz-broken {root / 'broken.wav'}"]) + "\n")
    (root / "head.scp").write_text("\n".join(lines[:10]) + "\n")
    return root


@pytest.fixture(scope="module")
def embedder(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("art") / "art"
    export(tiny_dir, out, modes=("waveform",), cases=build_suite(lengths=(16000,), batches=()), progress=False)
    return ArtifactEmbedder(out, "waveform")


def _failures(out: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()[1:]]
    return {key: reason for key, _, reason in rows}


@pytest.mark.slow  # starts a local Ray cluster (GCS server, raylet, actors)
def test_ray_engine_equals_local(ray_local, corpus, embedder, tmp_path):
    from w2vlab.corpus._ray import run_ray

    local = embed_corpus(corpus / "wav.scp", tmp_path / "local", embedder, batch_seconds=8, progress=False)
    remote = embed_corpus(
        corpus / "wav.scp", tmp_path / "ray", embedder, batch_seconds=8, progress=False, engine=run_ray, workers=2
    )
    assert (local.done, local.failed) == (remote.done, remote.failed) == (40, 1)
    assert remote.engine == "corpus_ray" and remote.workers == 2
    a, b = load_embeddings(tmp_path / "local"), load_embeddings(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == 40
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5
    assert _failures(tmp_path / "local").keys() == _failures(tmp_path / "ray").keys() == {"zz-broken"}
    assert abs(local.audio_seconds - remote.audio_seconds) < 1e-6


@pytest.mark.slow  # starts a local Ray cluster (GCS server, raylet, actors)
def test_ray_engine_resumes_a_local_run(ray_local, corpus, embedder, tmp_path):
    from w2vlab.corpus._ray import run_ray

    out = tmp_path / "out"
    embed_corpus(corpus / "head.scp", out, embedder, progress=False)  # 10 keys, as if interrupted
    summary = embed_corpus(corpus / "wav.scp", out, embedder, progress=False, engine=run_ray, workers=1)
    assert (summary.skipped, summary.done, summary.failed) == (10, 30, 1)
    scp_keys = [line.split()[0] for line in (out / "embeddings.scp").read_text().splitlines()]
    assert len(scp_keys) == len(set(scp_keys)) == 40  # every key once
    clean = tmp_path / "clean"
    embed_corpus(corpus / "wav.scp", clean, embedder, progress=False)
    a, b = load_embeddings(out), load_embeddings(clean)
    assert max(float(np.abs(a[k] - b[k]).max()) for k in b) <= 1e-5


def test_ray_engine_without_ray_says_what_to_install(monkeypatch, corpus, tmp_path, capsys):
    from w2vlab.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [scale] extra were missing
    code = main(
        [
            "embed-corpus",
            str(corpus / "wav.scp"),
            "--output",
            str(tmp_path / "o"),
            "--artifact",
            str(tmp_path / "nowhere"),
            "--engine",
            "ray",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e '.[scale]'" in err, err
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.slow  # starts a local Ray cluster (GCS server, raylet, actors)
def test_ray_actors_refuse_another_embedder(ray_local, corpus, embedder, tmp_path):
    """An actor that builds a different embedder (another artifact on a cluster node) fails the run."""
    from w2vlab.corpus._ray import run_ray

    other = tmp_path / "other"
    shutil.copytree(embedder.artifact.directory, other)

    class Liar:  # the driver's identity, the other copy's recipe
        identity, sample_rate, min_num_samples, mode = embedder.identity, 16000, 560, "waveform"
        prepare, embed = embedder.prepare, embedder.embed
        recipe = ArtifactEmbedder(other, "waveform").recipe

    with pytest.raises(Exception, match="not the driver's"):
        embed_corpus(corpus / "head.scp", tmp_path / "o", Liar(), progress=False, engine=run_ray, workers=1)
