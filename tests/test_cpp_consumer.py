"""The C++ consumer (``w2vlab/runtime/cpp/`` -> ``build/cpp/w2vlab-embed``) against the Python one; ``--format aoti``.

The program is built once per session by :func:`w2vlab.runtime._cpp.build` (through
``scripts/build_cpp_consumer.sh`` when its build dependencies are missing: the script installs them
as root); the tests skip only when that script says the dependencies cannot be installed here (exit status 3,
:class:`w2vlab.runtime._cpp.MissingBuildDependencies`).  Every embedding it prints is compared with
``load_artifact(...).embed_file(...)`` on the same file: the reference is the Python
consumer, which the export itself verified against HF extractor + eager model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from w2vlab._contract import FILES, FORMAT_TAG, MODES, read_embedded_metadata
from w2vlab.export._pipeline import export
from w2vlab.export._suite import build_suite
from w2vlab.runtime import _cpp as cpp_consumer
from w2vlab.runtime._artifact import load_artifact

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
FIXTURES = (
    "speech_en_m3_2s.wav",
    "speech_stereo_44k.wav",
    "speech_8k.wav",
    "speech_int16.wav",
    "speech_float32.wav",
    "speech_en_m3_0p5s.wav",
)
CASES = build_suite(lengths=(560, 16160), batches=((16160, 8000),))


def test_sources_ship_in_the_package_and_builds_go_outside_it(monkeypatch, tmp_path):
    """An installed w2vlab (no build script next to it) builds into the user's cache, not site-packages."""
    assert {p.name for p in cpp_consumer.SOURCES.iterdir()} >= {"CMakeLists.txt", "w2vlab_embed.cpp"}
    assert cpp_consumer.SOURCES.parent == Path(cpp_consumer.__file__).resolve().parent
    assert cpp_consumer.default_build_dir() == ROOT / "build" / "cpp"  # this checkout
    monkeypatch.setattr(cpp_consumer, "BUILD_SCRIPT", tmp_path / "no_script.sh")  # as installed from a wheel
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cpp_consumer.default_build_dir() == tmp_path / "cache" / "w2vlab" / "cpp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cpp_consumer.default_build_dir() == tmp_path / "home" / ".cache" / "w2vlab" / "cpp"
    monkeypatch.setattr(cpp_consumer.shutil, "which", lambda tool: None)  # no compiler, cmake, pkg-config
    with pytest.raises(cpp_consumer.MissingBuildDependencies, match="needs c\\+\\+, cmake, pkg-config; install: sudo"):
        cpp_consumer.build(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_program_reads_the_format_tag_python_writes():
    """The C++ program refuses other tags: its copy must follow w2vlab._contract.FORMAT_TAG."""
    source = (Path(cpp_consumer.__file__).parent / "cpp" / "w2vlab_embed.cpp").read_text()
    assert f'const char* kFormatTag = "{FORMAT_TAG}";' in source


def test_a_build_folder_configured_for_other_sources_is_configured_again(monkeypatch, tmp_path):
    """A build folder from before the sources moved into the package (its cache names the old folder)
    is configured from scratch, not built against sources that are gone; a current one is only built."""
    import torch

    calls = []
    monkeypatch.setattr(cpp_consumer, "missing_build_tools", lambda: [])
    monkeypatch.setattr(cpp_consumer, "_cmake", lambda *args: calls.append(args[0]))
    build = tmp_path / "build"
    build.mkdir()
    prefix = torch.utils.cmake_prefix_path
    stale = f"CMAKE_PREFIX_PATH:UNINITIALIZED={prefix}\nCMAKE_HOME_DIRECTORY:INTERNAL={tmp_path / 'cpp'}\n"
    (build / "CMakeCache.txt").write_text(stale)
    cpp_consumer.cmake_build(build)
    assert calls == ["-S", "--build"] and not (build / "CMakeCache.txt").exists()  # wiped, configured, built
    build.mkdir(exist_ok=True)
    current = f"CMAKE_PREFIX_PATH:UNINITIALIZED={prefix}\nCMAKE_HOME_DIRECTORY:INTERNAL={cpp_consumer.SOURCES}\n"
    (build / "CMakeCache.txt").write_text(current)
    calls.clear()
    cpp_consumer.cmake_build(build)
    assert calls == ["--build"] and (build / "CMakeCache.txt").read_text() == current


@pytest.fixture(scope="session")
def program() -> Path:
    try:
        return cpp_consumer.build()
    except cpp_consumer.MissingBuildDependencies as e:  # not root, or no apt-get: nothing can install them
        pytest.skip(f"the C++ consumer's build dependencies cannot be installed here: {e}")


@pytest.fixture(scope="session")
def artifact(tmp_path_factory, tiny_dir) -> Path:
    """The tiny demo, both modes, TorchScript + the AOTInductor package (compiled once)."""
    out = tmp_path_factory.mktemp("cpp") / "art"
    export(tiny_dir, out, modes=MODES, formats=("aoti",), cases=CASES, progress=False)
    return out


def embed(program: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess, dict[str, np.ndarray]]:
    """Run the program with raw arguments; (the process, path -> embedding parsed from its lines)."""
    run = subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=300)
    rows = {}
    for line in run.stdout.splitlines():
        path, values = line.split("\t")
        rows[path] = np.array(values.split(), dtype=np.float32)
    return run, rows


def assert_matches_python(rows: dict[str, np.ndarray], art) -> None:
    for path, got in rows.items():
        want = art.embed_file(path).numpy().reshape(-1)
        cosine = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
        assert np.abs(got - want).max() <= 1e-5 and cosine >= 0.99999, (path, np.abs(got - want).max(), cosine)


@pytest.mark.slow  # compiles the C++ program and an AOTInductor package
@pytest.mark.parametrize("fmt", ["torchscript", "aoti"])
def test_cpp_embeddings_match_the_python_consumer(program, artifact, fmt):
    files = [DATA / name for name in FIXTURES]
    run = cpp_consumer.run(artifact, files, aoti=fmt == "aoti", program=program)
    assert run.returncode == 0 and not run.errors, run.stderr
    assert list(run.embeddings) == [str(f) for f in files]  # one line per file, in order
    art = load_artifact(artifact, "waveform", fmt)
    assert all(len(v) == art.embedding_dim for v in run.embeddings.values())
    assert_matches_python(run.embeddings, art)


@pytest.mark.slow  # compiles the C++ program
def test_cpp_follows_a_toolkit_pooling_artifact(program, tiny_dir, tmp_path):
    """A WeSpeaker-style artifact's waveform archive pools odd clips' half rows; the program runs the
    module's own second stage (encode), so it embeds as the Python consumer does."""
    out = tmp_path / "toolkit"
    export(tiny_dir, out, modes=("waveform",), cases=CASES, progress=False, pooling="toolkit")
    files = [DATA / "speech_en_m3_1p01s.wav", DATA / "speech_en_m3_2s.wav"]  # 99 frames (a half row) and 198
    run = cpp_consumer.run(out, files, program=program)
    assert run.returncode == 0 and not run.errors, run.stderr
    art = load_artifact(out, "waveform")
    assert art.pooling == "toolkit"
    assert_matches_python(run.embeddings, art)


@pytest.mark.slow
def test_the_artifact_file_itself_and_npy_output(program, artifact, tmp_path):
    files = [DATA / "speech_8k.wav", DATA / "speech_de_2s.wav"]
    out = tmp_path / "emb.npy"
    run, _ = embed(program, "--npy", out, artifact / FILES["torchscript", "waveform"], *files)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{files[0]}\t0", f"{files[1]}\t1"]
    stacked = np.load(out)
    art = load_artifact(artifact, "waveform")
    want = np.stack([art.embed_file(f).numpy().reshape(-1) for f in files])
    assert stacked.dtype == np.float32 and stacked.shape == want.shape
    assert np.abs(stacked - want).max() <= 1e-5


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.slow
def test_bad_audio_gets_a_line_each_and_the_rest_is_embedded(program, artifact, tmp_path):
    good = DATA / "speech_int16.wav"
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:5000])
    bad = {
        tmp_path / "missing.wav": "not found",
        tmp_path: "is a directory",
        _write_wav(tmp_path / "short.wav", np.zeros(100)): "too short: 100 samples",
        _write_wav(tmp_path / "empty.wav", np.zeros(0)): "no audio samples",
        truncated: "truncated",
        (tmp_path / "text.wav"): "cannot read as audio",
    }
    (tmp_path / "text.wav").write_text("not audio")
    run = cpp_consumer.run(artifact, [*bad, good], program=program)
    assert run.returncode == 1
    assert list(run.embeddings) == [str(good)]
    assert set(run.errors) == set(map(str, bad))
    for path, message in bad.items():
        assert message in run.errors[str(path)], (message, run.errors[str(path)])
    assert f"{len(bad)} of {len(bad) + 1} files failed" in run.stderr


@pytest.mark.slow
def test_a_wrong_artifact_is_refused_with_exit_2(program, artifact, tmp_path):
    audio = DATA / "speech_int16.wav"
    cases = {
        tmp_path / "nowhere": "artifact not found",
        audio: "is not a TorchScript archive",
        artifact / FILES["torchscript", "preprocessed"]: "without a frontend (preprocessed mode?)",
    }
    foreign = tmp_path / "foreign.pt"  # a TorchScript archive without w2vlab metadata
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import torch; torch.jit.save(torch.jit.script(torch.nn.Identity()), {str(foreign)!r})",
        ],
        check=True,
        capture_output=True,
    )
    cases[foreign] = "carries no w2vlab metadata"
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    cases[empty] = "has no w2vbert_speaker_script_waveform.pt"
    for path, message in cases.items():
        run, rows = embed(program, path, audio)
        assert run.returncode == 2 and not rows and message in run.stderr, (path, run.stderr)
    run, _ = embed(program, "--aoti", artifact / FILES["aoti", "preprocessed"], audio)
    assert run.returncode == 2 and "for mode 'preprocessed'" in run.stderr, run.stderr
    run, _ = embed(program, "--threads", "zero", artifact, audio)
    assert run.returncode == 2 and "--threads must be a positive integer" in run.stderr


@pytest.mark.slow
def test_aoti_packages_are_verified_and_carry_the_metadata(artifact):
    md = json.loads((artifact / "metadata.json").read_text())
    for mode in MODES:
        entry = md["artifacts"][mode]["formats"]["aoti"]
        assert entry["parity"]["passed"] and entry["parity"]["n_clips"] == 4
        assert entry["parity"]["worst_max_abs_diff"] <= 1e-5
        assert read_embedded_metadata(artifact / entry["file"], "aoti") == md
    assert md["min_program_samples"] == 720


@pytest.mark.slow
def test_card_aoti_snippets_run_and_match_the_consumer(artifact):
    """The model card's AOTInductor blocks, run as written, give the embedding load_artifact gives."""
    from w2vlab.export._card import render_model_card

    card = render_model_card(json.loads((artifact / "metadata.json").read_text()), dirname=str(artifact))
    blocks = [b.split("```")[0] for b in card.split("```python\n")[1:] if "aoti_load_package" in b.split("```")[0]]
    assert len(blocks) == 2  # one per mode
    for code in blocks:
        scope: dict = {}
        exec(code, scope)
        mode = "preprocessed" if "fe" in scope else "waveform"
        wave = scope["wave"] if mode == "preprocessed" else scope["wave"][0].numpy()
        want = load_artifact(artifact, mode, "aoti").embed(np.asarray(wave, dtype=np.float32), 16000).reshape(-1)
        assert np.abs(scope["embedding"].numpy() - want.numpy()).max() <= 1e-5, mode
