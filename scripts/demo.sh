#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then profiles the bundled demos and prints their reports:
#   1. test/demo/demo.py, a Python script (Python frames: function, file, line);
#   2. memray-demo, a native C program (test/demo/demo.c) with two named threads.
# Captures go to <build>/demo/. Works from any directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MEMRAY_BUILD_DIR=${MEMRAY_BUILD_DIR:-$ROOT/build}
BUILD_DIR=$MEMRAY_BUILD_DIR

bash "$ROOT/scripts/setup.sh"

MEMRAY=$BUILD_DIR/src/cli/memray
OUT=$BUILD_DIR/demo
mkdir -p "$OUT"

# Shows each command before running it, so the demo doubles as a usage example.
run() {
    printf '\n$ %s\n' "$*"
    "$@"
}

run "$MEMRAY" run -f -o "$OUT/demo-python.bin" "$ROOT/test/demo/demo.py"
run "$MEMRAY" summary "$OUT/demo-python.bin"

run "$MEMRAY" run -f -o "$OUT/demo-native.bin" -- "$BUILD_DIR/test/demo/memray-demo"
run "$MEMRAY" summary "$OUT/demo-native.bin"

printf '\n==> demo done; captures are in %s (try: %s stats %s)\n' "$OUT" "$MEMRAY" "$OUT/demo-python.bin"
