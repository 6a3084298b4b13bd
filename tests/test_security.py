"""Safe loading: nothing in the package can unpickle arbitrary objects."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "w2vlab"


def test_no_unsafe_deserialisation_in_the_package():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(
                r"weights_only\s*=\s*False|\bimport pickle\b|\bpickle\.loads?\(|\bdill\b|\bjoblib\.load", line
            ):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
            if re.search(r"\btorch\.load\(", line) and "weights_only=True" not in line:
                offenders.append(f"{path.name}:{number}: torch.load without weights_only=True: {line.strip()}")
    assert not offenders, "\n".join(offenders)
