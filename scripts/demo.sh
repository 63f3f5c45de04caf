#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then shows the main job on bundled demos:
#   1. attach to a running Python service (test/demo/service.py, which leaks a little on every
#      request), let it run, detach, and write a flame graph and a summary of its leaks;
#   2. memray run on test/demo/demo.py, a Python script, and on memray-demo, a native C program
#      (test/demo/demo.c) with two named threads.
# Captures and reports go to <build>/demo/. Works from any directory.
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

# 1. A service that is already running: attach, record for two seconds, detach.
/usr/bin/python3 "$ROOT/test/demo/service.py" > "$OUT/service.log" 2>&1 &
SERVICE=$!
trap 'kill $SERVICE 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q ready "$OUT/service.log" 2>/dev/null && break; sleep 0.05; done
run "$MEMRAY" attach -f -o "$OUT/demo-attach.bin" "$SERVICE"
sleep 2
run "$MEMRAY" detach "$SERVICE"
kill "$SERVICE"
trap - EXIT
run "$MEMRAY" flamegraph -f --leaks -o "$OUT/demo-attach-leaks.html" "$OUT/demo-attach.bin"
run "$MEMRAY" tree --biggest-allocs 5 "$OUT/demo-attach.bin"
run "$MEMRAY" summary -r 5 "$OUT/demo-attach.bin"

# 2. Programs started by memray.
run "$MEMRAY" run -f -o "$OUT/demo-python.bin" "$ROOT/test/demo/demo.py"
run "$MEMRAY" summary "$OUT/demo-python.bin"

run "$MEMRAY" run -f -o "$OUT/demo-native.bin" -- "$BUILD_DIR/test/demo/memray-demo"
run "$MEMRAY" summary "$OUT/demo-native.bin"

printf '\n==> demo done; captures and reports are in %s (open %s in a browser)\n' "$OUT" "$OUT/demo-attach-leaks.html"
