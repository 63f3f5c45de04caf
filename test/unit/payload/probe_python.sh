#!/bin/sh
# probe_python.sh PROBE_LIB SCRIPT PYTHON: runs SCRIPT under PYTHON with the probe preloaded.
# Exit 77 (skip) with the reason when the interpreter is missing ('' from test/pythons.py).
probe=$1; script=$2; py=$3
[ -n "$py" ] && [ -x "$py" ] || { echo "SKIP: interpreter '${py}' not installed"; exit 77; }
LD_PRELOAD="$probe" exec "$py" "$script"
