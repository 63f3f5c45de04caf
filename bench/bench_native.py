#!/usr/bin/python3
"""Benchmark: cost of `memray run --native` against default `memray run` and against the plain
program, on the default Python workload (bench/workloads/py_alloc.py), the same with
PYTHONMALLOC=malloc (every object allocation reaches malloc) and the native workload
(native_churn), in one run, with heaptrack (always native stacks) where installed. Prints wall
and CPU (user + system, the process and everything it waited for) medians, their ratios, and the
captures' events and bytes per event.

usage: /usr/bin/python3 bench/bench_native.py [--build DIR] [--reps N] [--python PATH]
                                              [--only python,python-malloc,native]
environment:
  MEMRAY_BENCH_SCALE   multiplies workload sizes (default 1; e.g. 0.2 for a quick run)

Aim (issue 5): on the Python workload --native adds at most 20% over the default mode. For a
native program `memray run` records native stacks in both modes, so there the two should match.
The modes run alternately within each repetition so machine noise hits them alike; on a busy
machine read the CPU columns.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # importing bench.py must not leave files in the checkout
from bench import count_events, remove_capture  # noqa: E402

ROOT = os.path.dirname(HERE)
MODES = ("plain", "default", "native")
# heaptrack, where installed: it always records native stacks, the tool to compare --native with.
HEAPTRACK = "heaptrack"


def timed(cmd, env=None, cpu=None):
    """(wall seconds, CPU seconds) of one run; the CPU time is the child's rusage, which
    includes the processes it waited for (the target under `memray run`). `cpu`: run it, and
    every thread and process it starts, on that one CPU."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=pin)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s\n" % (p.returncode, " ".join(cmd),
                                                          err.decode(errors="replace")[-2000:]))
        raise SystemExit(1)
    return wall, usage.ru_utime + usage.ru_stime


def command(args, mode, cmd, capture):
    if mode == "plain":
        return cmd
    if mode == HEAPTRACK:
        return ["heaptrack", "-o", capture, *cmd]
    run = [args.memray, "run", "-f", "-q", "-o", capture]
    if mode == "native":
        run.append("--native")
    if os.path.basename(cmd[0]).startswith("python"):
        return [*run, "--python", cmd[0], *cmd[1:]]
    return [*run, "--", *cmd]


def remove_heaptrack_files(prefix):
    folder, base = os.path.split(prefix)
    for f in os.listdir(folder):
        if f.startswith(base):
            os.unlink(os.path.join(folder, f))


def bench_workload(args, name, cmd, work, env=None):
    modes = MODES + ((HEAPTRACK,) if args.heaptrack else ())
    samples = {m: [] for m in modes}
    captures = {m: os.path.join(work, "%s-%s.bin" % (name, m)) for m in modes}
    for rep in range(args.reps):
        # Rotate the order too, so no mode always runs right after the same neighbour.
        k = rep % len(modes)
        order = modes[k:] + modes[:k]
        for mode in order:
            if mode == HEAPTRACK:
                remove_heaptrack_files(captures[mode])
            else:
                remove_capture(captures[mode])
            samples[mode].append(timed(command(args, mode, cmd, captures[mode]), env=env))
    if args.heaptrack:
        remove_heaptrack_files(captures[HEAPTRACK])
    row = {"name": name}
    for m in modes:
        row[m] = (statistics.median(w for w, _ in samples[m]),
                  statistics.median(c for _, c in samples[m]))
    for m in ("default", "native"):
        row[m + "_events"] = count_events(args.memray, captures[m])
        row[m + "_bytes"] = os.path.getsize(captures[m])
        os.unlink(captures[m])
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--only", default="python,python-malloc,native",
                    help="comma-separated workloads to run (default: all three)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    args.reps = max(args.reps, 3)
    args.memray = os.path.join(args.build, "src", "cli", "memray")
    args.heaptrack = bool(shutil.which("heaptrack"))
    native_churn = os.path.join(args.build, "test", "integration", "native_churn")
    for exe in (args.memray, native_churn):
        if not os.access(exe, os.X_OK):
            raise SystemExit("missing %s: build first (ninja -C %s)" % (exe, args.build))
    scale = float(os.environ.get("MEMRAY_BENCH_SCALE", "1"))
    work = tempfile.mkdtemp(prefix="memray-bench-native-")
    n_native = max(1, int(10_000_000 * scale))
    py_alloc = [args.python, os.path.join(HERE, "workloads", "py_alloc.py"), str(scale)]
    rows = []
    try:
        if "python" in only:
            rows.append(bench_workload(args, "python", py_alloc, work))
        if "python-malloc" in only:
            # Every Python object allocation reaches malloc: a native stack per small object,
            # the worst case for --native on Python code.
            rows.append(bench_workload(args, "python-malloc", py_alloc, work,
                                       {"PYTHONMALLOC": "malloc"}))
        if "native" in only:
            rows.append(bench_workload(args, "native-%gM" % (n_native / 1e6),
                                       [native_churn, str(n_native)], work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("memray --native overhead (median of %d alternating runs, scale %g, %s)"
          % (args.reps, scale, args.python))
    ht = ("%10s %10s" % ("heaptrack", "ht/native")) if args.heaptrack else "(heaptrack not installed)"
    print("%-14s %-5s %8s %8s %8s %9s %9s %10s %s" % ("workload", "", "plain", "default", "native",
                                                     "def/plain", "nat/plain", "nat/default", ht))
    for r in rows:
        for i, what in enumerate(("wall", "cpu")):
            p, d, n = r["plain"][i], r["default"][i], r["native"][i]
            extra = ""
            if args.heaptrack:
                h = r[HEAPTRACK][i]
                extra = " %9.3fs %9.3fx" % (h, h / n)
            print("%-14s %-5s %7.3fs %7.3fs %7.3fs %8.3fx %8.3fx %9.3fx%s"
                  % (r["name"] if i == 0 else "", what, p, d, n, d / p, n / p, n / d, extra))
    print()
    print("%-14s %12s %12s %14s %14s" % ("capture", "default ev", "native ev", "default B/ev",
                                         "native B/ev"))
    for r in rows:
        print("%-14s %12d %12d %14.2f %14.2f"
              % (r["name"], r["default_events"], r["native_events"],
                 r["default_bytes"] / max(r["default_events"], 1),
                 r["native_bytes"] / max(r["native_events"], 1)))
    py = rows[0]
    if py["name"] != "python":
        return
    over = py["native"][1] / py["default"][1] - 1
    print()
    print("python workload: --native adds %+.1f%% CPU (%+.1f%% wall) over the default mode; "
          "aim <= +20%%" % (100 * over, 100 * (py["native"][0] / py["default"][0] - 1)))


if __name__ == "__main__":
    main()
