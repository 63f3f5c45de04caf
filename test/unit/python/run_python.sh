#!/bin/sh
# Runs a test script under one interpreter; skips (exit 77) when that interpreter is missing.
python="$1"
shift
if [ ! -x "$python" ]; then
    echo "SKIP: interpreter $python not installed"
    exit 77
fi
exec "$python" "$@"
