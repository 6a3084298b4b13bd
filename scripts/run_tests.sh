#!/usr/bin/env bash
# Run every test: unit tests, then each notebook top to bottom through nbval.
# Sets up .venv_w2vbert_notebook first when it is missing or stale (see setup_notebook_env.sh).
#   scripts/run_tests.sh [extra pytest args]      e.g. -m "not slow" for the quick loop, -n 0 for one process
#
# The suite is CPU-bound, so it runs in one pytest-xdist worker per core (at most 4; each test
# module and each notebook stays on one worker) with one OpenMP thread per worker.  On 2 cores,
# two workers with torch's default 2 threads each spun against each other: 18 min of CPU for an
# 11-minute run, against 12.5 min of CPU and 8 min with one thread each (tests that time or
# compare thread counts set their own: the benchmark children use --threads 2).  Modules start in
# collection order, which tests/conftest.py begins with the minute-long ones (xdist's own reorder
# puts the modules and notebooks with the most tests first, and left the benchmark to the tail).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup_notebook_env.sh
workers="${W2VLAB_TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}"
export MPLBACKEND=Agg PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec .venv_w2vbert_notebook/bin/python -m pytest tests notebooks -n "$workers" --dist loadscope --no-loadscope-reorder \
    --nbval-lax --nbval-current-env --nbval-cell-timeout=300 -p no:cacheprovider "$@"
