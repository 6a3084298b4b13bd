#!/usr/bin/env bash
# Run every test: unit tests, then each notebook top to bottom through nbval.
# Sets up .venv_w2vbert_notebook first when it is missing or stale (see setup_notebook_env.sh).
#   scripts/run_tests.sh [extra pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup_notebook_env.sh
export MPLBACKEND=Agg PYTHONHASHSEED=0
exec .venv_w2vbert_notebook/bin/python -m pytest tests notebooks \
    --nbval-lax --nbval-current-env --nbval-cell-timeout=300 -p no:cacheprovider "$@"
