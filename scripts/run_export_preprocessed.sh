#!/usr/bin/env bash
# README command one: export a speaker encoder to a verified TorchScript artifact.
#
#   scripts/run_export_preprocessed.sh              # build the tiny demo checkpoint and export it
#   scripts/run_export_preprocessed.sh ARGS...      # forwarded to scripts/export_w2vbert_torchscript.py
#
# With no arguments the artifact goes to artifacts/w2vbert_speaker/ (replaced if present) and
# the parity summary is printed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup_notebook_env.sh
py=.venv_w2vbert_notebook/bin/python
if [ "$#" -gt 0 ]; then
    exec "$py" scripts/export_w2vbert_torchscript.py "$@"
fi
"$py" -m w2vlab demo-checkpoint artifacts/demo_checkpoint --size tiny --force
exec "$py" scripts/export_w2vbert_torchscript.py --preprocess \
    --model-path artifacts/demo_checkpoint --output artifacts/w2vbert_speaker --force
