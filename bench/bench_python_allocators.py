#!/usr/bin/python3
"""Benchmark: `memray run --trace-python-allocators` against a plain run and a default `memray
run` of the same Python workload (bench/workloads/py_alloc.py), interleaved, wall and CPU time
(user + system of the process tree), medians. Also the events each capture holds and the cost
per extra event, which says where the time goes.

usage: /usr/bin/python3 bench/bench_python_allocators.py [--build DIR] [--reps N] [--python PATH]
environment: MEMRAY_BENCH_SCALE multiplies the workload (default 1)
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench import count_events  # noqa: E402 (one event counter for every bench)


def timed(cmd):
    """(wall seconds, CPU seconds of the children) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s\n" % (p.returncode, " ".join(cmd),
                                                          p.stderr.decode(errors="replace")[-2000:]))
        raise SystemExit(1)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", default="/usr/bin/python3")
    args = ap.parse_args()
    memray = os.path.join(args.build, "src", "cli", "memray")
    scale = os.environ.get("MEMRAY_BENCH_SCALE", "1")
    script = os.path.join(HERE, "workloads", "py_alloc.py")
    work = tempfile.mkdtemp(prefix="memray-bench-pyalloc-")
    captures = {"memray": os.path.join(work, "plain.bin"),
                "traced": os.path.join(work, "traced.bin")}
    cmds = {
        "plain": [args.python, script, scale],
        "memray": [memray, "run", "-f", "-q", "-o", captures["memray"], "--python", args.python,
                   script, scale],
        "traced": [memray, "run", "-f", "-q", "--trace-python-allocators", "-o",
                   captures["traced"], "--python", args.python, script, scale],
    }
    results = {k: ([], []) for k in cmds}
    for _ in range(args.reps):
        for name, cmd in cmds.items():  # interleaved: machine noise hits all three alike
            wall, cpu = timed(cmd)
            results[name][0].append(wall)
            results[name][1].append(cpu)
    med = {k: (statistics.median(w), statistics.median(c)) for k, (w, c) in results.items()}
    events = {k: count_events(memray, path) for k, path in captures.items()}
    print("py_alloc scale %s, %d interleaved reps, %s" % (scale, args.reps, args.python))
    print("%-8s %9s %9s %8s %8s %12s" % ("run", "wall s", "cpu s", "wall x", "cpu x", "events"))
    for name in cmds:
        wall, cpu = med[name]
        print("%-8s %9.3f %9.3f %8.2f %8.2f %12s" % (
            name, wall, cpu, wall / med["plain"][0], cpu / med["plain"][1],
            events.get(name, "-")))
    extra = events["traced"] - events["memray"]
    if extra > 0:
        per = (med["traced"][1] - med["memray"][1]) / extra * 1e9
        print("cost per extra PYMALLOC event: %.0f ns CPU (%d extra events)" % (per, extra))
    for path in captures.values():
        os.unlink(path)
    os.rmdir(work)


if __name__ == "__main__":
    main()
