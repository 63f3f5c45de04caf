#!/bin/sh
# probe_python.sh PROBE_LIB SCRIPT PYTHON...: runs SCRIPT under each interpreter with the probe
# preloaded. Exit 77 (skip) when none of the interpreters exists.
probe=$1; script=$2; shift 2
ran=0; failed=0
for py in "$@"; do
    [ -x "$py" ] || { echo "skip: $py not found"; continue; }
    ran=1
    if ! LD_PRELOAD="$probe" "$py" "$script"; then
        echo "FAIL: $py"; failed=1
    fi
done
[ "$ran" = 1 ] || { echo "no Python interpreter found"; exit 77; }
exit $failed
