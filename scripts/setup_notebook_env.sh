#!/usr/bin/env bash
# Create (or reuse) .venv_w2vbert_notebook at the repo root, install w2vlab into it and
# register the Jupyter kernel "w2vlab".  Idempotent: a second run checks and returns.
#
#   scripts/setup_notebook_env.sh [PYTHON]
#
# PYTHON defaults to python3.11, then python3.12, then python3.
# W2VLAB_TORCH_SPEC overrides the torch requirement (default torch==2.13.0: on this
# machine that is a CPU wheel on disk; a looser spec downloads a multi-GB CUDA build).
# With the [browser] extra (default) it also makes sure Debian's chromium is there for
# tests/test_browser.py: apt-get installs it when missing and running as root; otherwise a
# warning, and that test skips.  Playwright's own browser download is never used.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv_w2vbert_notebook"
torch_spec="${W2VLAB_TORCH_SPEC:-torch==2.13.0}"
extras="${W2VLAB_EXTRAS:-lab,dev,onnx,openvino,browser,report,scale}"  # W2VLAB_EXTRAS=lab,dev leaves out ONNX, OpenVINO, the browser, the report, Ray (their tests skip)
stamp="$venv/.w2vlab-setup-stamp"

pick_python() {
    if [ -n "${1:-}" ]; then echo "$1"; return; fi
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
            echo "$candidate"; return
        fi
    done
    echo "setup_notebook_env.sh: no python3 found; pass one as the first argument" >&2
    exit 1
}

register_kernel() {
    # The kernel name is per user, not per checkout: point it at this venv if it points elsewhere.
    local current
    current="$("$venv/bin/python" -c 'from jupyter_client.kernelspec import KernelSpecManager as K
print(K().get_kernel_spec("w2vlab").argv[0])' 2>/dev/null || true)"
    if [ "$current" != "$venv/bin/python" ]; then
        "$venv/bin/python" -m ipykernel install --user --name w2vlab --display-name "Python (w2vlab)" >/dev/null
        echo "registered Jupyter kernel 'w2vlab' -> $venv/bin/python"
    fi
}

ensure_chromium() {
    # Debian's chromium for the browser test (Playwright drives /usr/bin/chromium).  Checked on
    # every run, stamp or not: it lives outside the venv.  Never fatal.
    case ",$extras," in *,browser,*) ;; *) return 0 ;; esac
    if command -v chromium >/dev/null 2>&1; then return 0; fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "WARNING: chromium is missing and apt-get cannot install it here (it needs root on Debian/Ubuntu);" \
             "install it (sudo apt-get install chromium) or tests/test_browser.py skips." >&2
        return 0
    fi
    echo "installing Debian's chromium (apt-get) for tests/test_browser.py"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
        echo "WARNING: apt-get could not install chromium; tests/test_browser.py skips." >&2
    fi
}

# The stamp records what was installed; if nothing it depends on changed, do nothing.
want="$(cat "$root/pyproject.toml"; echo "$torch_spec $extras")"
want_hash="$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_hash" ] \
    && "$venv/bin/python" -c 'import w2vlab, torch, transformers' >/dev/null 2>&1; then
    register_kernel
    ensure_chromium
    echo "w2vlab env is up to date: $venv"
    exit 0
fi

python="$(pick_python "${1:-}")"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
minor="$("$py" -c 'import sys; print(sys.version_info[1])')"
if [ "$minor" -ge 14 ]; then
    echo "WARNING: Python 3.$minor has no numba/librosa wheels; librosa is skipped and" \
         "w2vlab resamples with soxr and reads audio with soundfile instead." >&2
fi

"$py" -m pip install --quiet --upgrade pip
echo "installing $torch_spec"
"$py" -m pip install --quiet "$torch_spec"
echo "installing w2vlab[$extras] (editable)"
"$py" -m pip install --quiet -e "$root[$extras]"
register_kernel
ensure_chromium
echo "$want_hash" > "$stamp"
echo "w2vlab env ready: $venv (kernel 'w2vlab')"
