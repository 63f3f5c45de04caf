#!/usr/bin/python3
"""Captures of another format version get one clear error from every command that reads them.

A committed version-1 capture (captures/v1_native_threads.bin, written before Node kind 2) and a
"newer" one (the current golden capture re-stamped as version 99) must make each reading command
exit 1 with exactly

    memray: error: FILE: unsupported capture version N (this memray reads M)

and nothing else on stderr (no checksum or corruption message). The current capture, read by the
same commands, must succeed, so the test also fails when a command stops reading captures at all.

usage: test_version.py MEMRAY
"""

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.join(HERE, "captures")

# Each command that reads a capture, with an output file where it writes one ({out}).
COMMANDS = [
    ["stats"],
    ["stats", "--json", "-f", "-o", "{out}"],
    ["summary", "--no-symbolize"],
    ["parse"],
    ["tree", "--no-symbolize"],
    ["flamegraph", "--no-symbolize", "-f", "-o", "{out}"],
    ["table", "--no-symbolize", "-f", "-o", "{out}"],
    ["transform", "csv", "--no-symbolize", "-f", "-o", "{out}"],
]


def version_of(path):
    with open(path, "rb") as f:
        head = f.read(12)
    assert head[:8] == b"MEMRAYCP", path
    return struct.unpack_from("<I", head, 8)[0]


def run(memray, args, capture, work):
    out = os.path.join(work, "out")
    cmd = [memray] + [a.replace("{out}", out) for a in args] + [capture]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, TZ="UTC"))
    return cmd, p


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    memray = sys.argv[1]
    work = tempfile.mkdtemp(prefix="mr-version-")
    failures = []
    try:
        current = os.path.join(CAPTURES, "native_threads.bin")
        this_version = version_of(current)
        old = os.path.join(CAPTURES, "v1_native_threads.bin")
        if version_of(old) != 1:
            failures.append(f"{old} is not a version-1 capture")
        newer = os.path.join(work, "v99.bin")
        shutil.copyfile(current, newer)
        with open(newer, "r+b") as f:
            f.seek(8)
            f.write(struct.pack("<I", 99))

        # Every other golden capture must carry the same version: they are re-stamped together
        # on every bump (and v1_* keeps the old one).
        for name in sorted(os.listdir(CAPTURES)):
            if name.endswith(".bin") and not name.startswith("v1_"):
                v = version_of(os.path.join(CAPTURES, name))
                if v != this_version:
                    failures.append(f"captures/{name} is version {v}, not {this_version}")

        for args in COMMANDS:
            cmd, p = run(memray, args, current, work)
            if p.returncode != 0:
                failures.append(f"{' '.join(cmd)}: exit {p.returncode} on the current capture\n"
                                f"{p.stderr.decode(errors='replace')}")
            for capture, version in ((old, 1), (newer, 99)):
                cmd, p = run(memray, args, capture, work)
                expected = (f"memray: error: {capture}: unsupported capture version {version} "
                            f"(this memray reads {this_version})\n")
                stderr = p.stderr.decode(errors="replace")
                if p.returncode != 1 or stderr != expected:
                    failures.append(f"{' '.join(cmd)}: exit {p.returncode}, stderr\n  {stderr!r}\n"
                                    f"expected exit 1, stderr\n  {expected!r}")
                elif re.search(rb"\S", p.stdout):
                    failures.append(f"{' '.join(cmd)}: printed to stdout: {p.stdout[:200]!r}")
                else:
                    print(f"ok   {args[0]} on version {version}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("\n".join("FAIL " + f for f in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
