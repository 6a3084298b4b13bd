#!/usr/bin/env bash
# Build the C++ consumer, cpp/ -> build/cpp/w2vlab-embed, against the libtorch inside the
# venv's torch wheel.  Idempotent: a second run only rebuilds what changed.
#
#   scripts/build_cpp_consumer.sh
#
# Needs a C++ compiler, cmake, pkg-config, libsndfile and libsoxr headers.  Missing ones are
# installed with apt-get when running as root on Debian/Ubuntu (g++ cmake pkg-config
# libsndfile1-dev libsoxr-dev); otherwise it stops with exit status 3 and the command to run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="$root/build/cpp"
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

[ -x .venv_w2vbert_notebook/bin/python ] || ./scripts/setup_notebook_env.sh
mkdir -p "$root/build"
exec 9>"$root/build/.cpp.lock"
flock 9  # one build at a time (parallel test workers and a notebook may ask together)
prefix="$(.venv_w2vbert_notebook/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
start=$(date +%s)
if ! grep -qsF "CMAKE_PREFIX_PATH:UNINITIALIZED=$prefix" "$build/CMakeCache.txt"; then
    rm -rf "$build"  # first build, or another torch: configure from scratch
    cmake -S cpp -B "$build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$(nproc)"
echo "built $build/w2vlab-embed in $(( $(date +%s) - start )) s"
