"""setuptools build step: the notebooks ``w2vlab report`` runs go into the wheel.

``notebooks/`` stays where it is (users open it in JupyterLab); the build copies the report's
notebooks, the audio fixtures they read (``../tests/data/*.wav`` and the evaluation voices in
``voices_eval``: 04 embeds some, 06 scores their trials), relative to the notebooks, and the benchmark
summary 04 and 06 read into ``w2vlab/lab/_bundle/`` with the same layout, so the notebooks' relative
paths hold there too.  Nothing is committed twice: tests/test_wheel.py checks that the wheel's copies
equal the repository's files.  Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLE = "w2vlab/lab/_bundle"
BUNDLED = (  # (folder, glob) relative to the repository root, copied to the same place under BUNDLE
    ("notebooks", "0[12456]_*.ipynb"),  # w2vlab.lab._report.NOTEBOOKS
    ("tests/data", "*.wav"),
    ("tests/data/voices_eval", "utt2spk"),  # 04's similarity matrix: held-out voices of the trained demo
    ("tests/data/voices_eval", "wav.scp"),
    ("tests/data/voices_eval", "trials.txt"),  # 06 counts the int8 copy's flipped decisions on these trials
    ("tests/data/voices_eval/wav", "*.flac"),
    ("artifacts/bench", "full_quick_2threads_latest.json"),
)


class build_py_with_notebooks(build_py):  # noqa: N801  (setuptools' command naming)
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install runs the checkout's notebooks in place
            return
        for folder, pattern in BUNDLED:
            files = sorted((ROOT / folder).glob(pattern))
            if not files:
                raise FileNotFoundError(f"no {folder}/{pattern} in {ROOT}: the wheel is built from a full checkout")
            target = Path(self.build_lib) / BUNDLE / folder
            target.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(f, target / f.name)


setup(cmdclass={"build_py": build_py_with_notebooks})
