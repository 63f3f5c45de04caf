#!/usr/bin/env bash
# Prepares a Debian 12 machine to build memray and builds it. Idempotent: installs only the
# packages that are missing (running `apt-get update` only then), configures the build directory
# only when it is not configured yet, and lets ninja rebuild only what changed.
#
#   scripts/setup.sh              # used by scripts/demo.sh and scripts/test.sh
#
# Environment:
#   MEMRAY_BUILD_DIR   build directory (default: <repo>/build)
#   MEMRAY_JOBS        parallel build jobs (default: ninja's choice)
#   MEMRAY_SKIP_APT=1  never call apt-get (only report what is missing)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${MEMRAY_BUILD_DIR:-$ROOT/build}

# Everything the build, the demo and the tests use. cmake: doctest-dev ships no pkg-config file,
# meson finds it through CMake. clang-14 + libclang-rt-14-dev build the libFuzzer reader fuzzer;
# binutils (readelf, nm) is used by the layering test.
PACKAGES=(
    meson ninja-build cmake g++ gcc pkg-config binutils
    liblz4-dev libunwind-dev libcli11-dev libfmt-dev doctest-dev
    llvm-14-dev clang-14 libclang-rt-14-dev
    python3
    # memray attach tests: a third-party server under load, and `unshare` for a private mount
    # namespace.
    redis-server redis-tools util-linux
    # transform pprof: gzip (zlib); its test decodes the protobuf with protoc.
    zlib1g-dev protobuf-compiler
    # flamegraph/table tests open the pages in headless Chromium.
    chromium
    # --native tests build a small C extension module for Debian's python3 (Python.h).
    python3-dev
    # The memray Python package: its IPython magic is tested through IPython's testing shell
    # (which needs pytest).
    python3-ipython python3-pytest
    # the live view and the interactive tree draw with ncurses; their tests drive them in tmux.
    libncurses-dev tmux
    # attach-32bit builds a 32-bit target (gcc -m32) to check that attach refuses it cleanly.
    gcc-multilib
)
# The HTML reports bundle npm packages at build time: node and npm, from Debian when the machine
# has no node of its own.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    PACKAGES+=(nodejs npm)
fi

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

[[ -r /etc/debian_version ]] || die "this script installs Debian packages; on another system install: ${PACKAGES[*]}"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    say "all ${#PACKAGES[@]} required Debian packages are installed"
elif [[ ${MEMRAY_SKIP_APT:-0} == 1 ]]; then
    die "missing Debian packages (MEMRAY_SKIP_APT=1, not installing): ${missing[*]}"
else
    say "installing missing Debian packages: ${missing[*]}"
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "not root and no sudo: as root run: apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    if [[ -d $BUILD_DIR/meson-private ]]; then
        say "reconfiguring the broken build directory $BUILD_DIR"
        meson setup --wipe "$BUILD_DIR" "$ROOT"
    else
        say "configuring $BUILD_DIR"
        meson setup "$BUILD_DIR" "$ROOT"
    fi
fi

say "building in $BUILD_DIR"
jobs=()
[[ -n ${MEMRAY_JOBS:-} ]] && jobs=(-j "$MEMRAY_JOBS")
# ninja re-runs meson by itself when a meson.build file changed.
ninja -C "$BUILD_DIR" "${jobs[@]}"
say "built $BUILD_DIR/src/cli/memray"
