#!/usr/bin/python3
"""Golden outputs: report commands on the tiny captures in captures/, compared byte for byte with
expected/. Regenerate after an intended change (and review the diff):

    /usr/bin/python3 test/golden/run_golden.py build-DIR/src/cli/memray --regen

usage: run_golden.py MEMRAY [--regen]
"""

import difflib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# (expected file, capture, arguments; "{out}" is an output file, whose contents are compared;
# without it, stdout is compared)
CASES = [
    ("python_views.summary.txt", "python_views.bin", ["summary"]),
    ("python_views.summary-temporary.txt", "python_views.bin",
     ["summary", "--temporary-allocations"]),
    ("python_views.summary-temporary0.txt", "python_views.bin",
     ["summary", "--temporary-allocation-threshold", "0"]),
    ("python_views.tree.txt", "python_views.bin", ["tree"]),
    ("python_views.tree-b2.txt", "python_views.bin", ["tree", "-b", "2"]),
    ("python_views.tree-temporary.txt", "python_views.bin", ["tree", "--temporary-allocations"]),
    ("python_views.stats.json", "python_views.bin", ["stats", "--json", "-o", "{out}"]),
    ("python_views.hwm.csv", "python_views.bin", ["transform", "csv", "-o", "{out}"]),
    ("python_views.leaks.csv", "python_views.bin", ["transform", "csv", "--leaks", "-o", "{out}"]),
    ("python_views.temporary0.csv", "python_views.bin",
     ["transform", "csv", "--temporary-allocation-threshold", "0", "-o", "{out}"]),
    ("python_views.gprof2dot.json", "python_views.bin", ["transform", "gprof2dot", "-o", "{out}"]),
    ("python_views.speedscope.json", "python_views.bin",
     ["transform", "speedscope", "-o", "{out}"]),
    # --no-symbolize: libc's names depend on whether this machine has its debug files.
    ("native_threads.summary.txt", "native_threads.bin", ["summary", "--no-symbolize"]),
    ("native_threads.tree.txt", "native_threads.bin", ["tree", "--no-symbolize", "-b", "5"]),
    ("native_threads.stats.json", "native_threads.bin",
     ["stats", "--no-symbolize", "--json", "-o", "{out}"]),
    ("native_threads.split.csv", "native_threads.bin",
     ["transform", "csv", "--no-symbolize", "--split-threads", "-o", "{out}"]),
]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    memray = sys.argv[1]
    regen = "--regen" in sys.argv[2:]
    work = tempfile.mkdtemp(prefix="mr-golden-")
    # Fixed environment: local times in stats use TZ; no terminal, no colours.
    env = dict(os.environ, TZ="UTC", COLUMNS="250")
    failures = 0
    for expected_name, capture, args in CASES:
        out = os.path.join(work, expected_name)
        cmd = [memray] + [a.replace("{out}", out) for a in args] + [
            os.path.join(HERE, "captures", capture)]
        if "{out}" in args:
            cmd.insert(3 if args[0] == "transform" else 2, "-f")
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if p.returncode != 0:
            print("FAIL %s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stderr.decode()))
            failures += 1
            continue
        if "{out}" in args:
            with open(out, "rb") as f:
                actual = f.read()
        else:
            actual = p.stdout
        expected_path = os.path.join(HERE, "expected", expected_name)
        if regen:
            with open(expected_path, "wb") as f:
                f.write(actual)
            print("wrote " + expected_path)
            continue
        with open(expected_path, "rb") as f:
            expected = f.read()
        if actual == expected:
            print("ok   " + expected_name)
            continue
        failures += 1
        print("FAIL %s (%s)" % (expected_name, " ".join(cmd)))
        diff = difflib.unified_diff(expected.decode(errors="replace").splitlines(),
                                    actual.decode(errors="replace").splitlines(),
                                    "expected", "actual", lineterm="")
        print("\n".join(list(diff)[:60]))
    shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d golden output(s) differ; if the change is intended, regenerate with --regen "
              "and review the diff" % failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
