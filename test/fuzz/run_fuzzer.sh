#!/bin/sh
# Runs the reader fuzzer for a bounded time on a scratch copy of the committed corpus. A crash
# leaves its input in the crashers directory (commit it: run_corpus keeps it as a regression).
set -eu
exe=$1 corpus=$2 crashers=$3
seconds=${MEMRAY_FUZZ_SECONDS:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$corpus"/* "$work"/
mkdir -p "$crashers"
exec "$exe" "$work" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 \
    -artifact_prefix="$crashers"/ -print_final_stats=1
