#!/usr/bin/env bash
# README command three: open the workbench's notebooks in JupyterLab, kernel "w2vlab".
#
#   scripts/run_lab.sh                      # serve notebooks/ on http://127.0.0.1:8888/lab
#   scripts/run_lab.sh --port 9999 ARGS...  # --port and any other arguments go to `jupyter lab`
#
# Sets up .venv_w2vbert_notebook first when it is missing or stale (see setup_notebook_env.sh,
# which also registers the kernel).  Binds to 127.0.0.1 only and opens no browser; adds
# --allow-root when run as root, where JupyterLab otherwise refuses to start.  JupyterLab prints
# the URL with its access token once it is up; Ctrl-C twice (or SIGTERM) stops it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup_notebook_env.sh

# Only for the banner below: the port the user asked for (JupyterLab's default otherwise).
port=8888
prev=""
for arg in "$@"; do
    case "$arg" in
        --port=*|--ServerApp.port=*) port="${arg#*=}" ;;
    esac
    case "$prev" in
        --port|--ServerApp.port) port="$arg" ;;
    esac
    prev="$arg"
done

# The committed notebooks carry their panels' saved widget state, which JupyterLab draws only for
# trusted notebooks: these are the project's own, so sign them (in the user's Jupyter data dir).
.venv_w2vbert_notebook/bin/jupyter trust "$root"/notebooks/*.ipynb >/dev/null

lab_args=(--ServerApp.root_dir="$root/notebooks" --ip=127.0.0.1 --no-browser)
if [ "$(id -u)" -eq 0 ]; then
    lab_args+=(--allow-root)
fi

echo "w2vlab: starting JupyterLab on $root/notebooks, kernel \"Python (w2vlab)\""
echo "w2vlab: open http://127.0.0.1:$port/lab?token=... (JupyterLab prints the exact URL below, token and port included)"
exec .venv_w2vbert_notebook/bin/jupyter lab "${lab_args[@]}" "$@"
