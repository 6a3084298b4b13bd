#!/usr/bin/env bash
# Build the C++ consumer, w2vlab/runtime/cpp/ -> build/cpp/w2vlab-embed (or BUILD_DIR/w2vlab-embed),
# against the libtorch inside the venv's torch wheel.  Idempotent: a second run only rebuilds what
# changed.  The build itself is w2vlab.runtime._cpp.cmake_build (what an installed w2vlab runs);
# this script adds the build dependencies.
#
#   scripts/build_cpp_consumer.sh [BUILD_DIR]
#
# PYTHON: the interpreter whose torch to build against (default: .venv_w2vbert_notebook's, set up
# first when missing).
#
# Needs a C++ compiler, cmake, pkg-config, libsndfile and libsoxr headers.  Missing ones are
# installed with apt-get when running as root on Debian/Ubuntu (g++ cmake pkg-config
# libsndfile1-dev libsoxr-dev); otherwise it stops with exit status 3 and the command to run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath -m "${1:-$root/build/cpp}")"  # relative to where it was called from
cd "$root"
packages="g++ cmake pkg-config libsndfile1-dev libsoxr-dev"

have_deps() {
    command -v c++ >/dev/null 2>&1 && command -v cmake >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 \
        && pkg-config --exists sndfile soxr
}

if ! have_deps; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "build_cpp_consumer.sh: missing build dependencies; install them: sudo apt-get install $packages" >&2
        exit 3
    fi
    echo "installing the C++ consumer's build dependencies (apt-get): $packages"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null; } \
        || ! have_deps; then
        echo "build_cpp_consumer.sh: apt-get could not install $packages" >&2
        exit 3
    fi
fi

if [ -z "${PYTHON:-}" ]; then
    [ -x .venv_w2vbert_notebook/bin/python ] || ./scripts/setup_notebook_env.sh
    PYTHON=.venv_w2vbert_notebook/bin/python
fi
start=$(date +%s)
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c 'import sys
from w2vlab.runtime._cpp import cmake_build
cmake_build(sys.argv[1])' "$build"
echo "built $build/w2vlab-embed in $(( $(date +%s) - start )) s"
