#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test suite (unit, integration, fuzz) with
# meson. Extra arguments go to `meson test` (e.g. --suite unit, or a test name). Exits non-zero
# when a test fails; meson's own summary is the last thing printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MEMRAY_BUILD_DIR=${MEMRAY_BUILD_DIR:-$ROOT/build}
BUILD_DIR=$MEMRAY_BUILD_DIR

bash "$ROOT/scripts/setup.sh"

jobs=()
[[ -n ${MEMRAY_JOBS:-} ]] && jobs=(--num-processes "$MEMRAY_JOBS")
printf '==> running the tests in %s\n' "$BUILD_DIR"
exec meson test -C "$BUILD_DIR" --print-errorlogs "${jobs[@]}" "$@" </dev/null
