#!/usr/bin/python3
"""Benchmark: overhead of live mode (`memray run --live-remote` with `memray live PORT` reading,
its table printed as text to /dev/null) against file mode (`memray run -o`), on the Python and
native workloads of bench.py. Runs alternate file / live for each repetition so that machine
noise hits both alike; prints the medians of wall time and of the program's CPU time (user +
system of memray run and its child; the viewer, started first, is not counted). The aim (docs/live.md): live no worse than file + 10%.

usage: /usr/bin/python3 bench/bench_live.py [--build DIR] [--reps N] [--python PATH]
environment: MEMRAY_BENCH_SCALE multiplies workload sizes (default 1; 0.1 for a quick run)
"""

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waited(proc):
    """Waits for `proc`; returns its exit status and CPU seconds (its own and its children's)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def run_file(memray, target, tmp):
    out = os.path.join(tmp, "f.bin")
    t0 = time.monotonic()
    code, cpu = waited(subprocess.Popen([memray, "run", "-f", "-q", "-o", out] + target,
                                        stdout=subprocess.DEVNULL))
    if code != 0:
        raise SystemExit("file run failed")
    return time.monotonic() - t0, cpu


def run_live(memray, target):
    port = free_port()
    # The viewer first (it retries until the program listens), so that the program's time does
    # not include the viewer's start-up; its CPU is the viewer's, not the program's.
    viewer = subprocess.Popen([memray, "live", str(port)], stdout=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    t0 = time.monotonic()
    code, cpu = waited(subprocess.Popen([memray, "run", "-q", "--live-remote", "-p", str(port)]
                                        + target, stdout=subprocess.DEVNULL))
    wall = time.monotonic() - t0
    if code != 0:
        raise SystemExit("live run failed")
    viewer.wait()
    return wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", default="python3")
    args = ap.parse_args()
    memray = os.path.join(args.build, "src", "cli", "memray")
    churn = os.path.join(args.build, "test", "integration", "native_churn")
    scale = float(os.environ.get("MEMRAY_BENCH_SCALE", "1"))
    workloads = {
        "python": ["--python", args.python, os.path.join(HERE, "workloads", "py_alloc.py"),
                   str(scale)],
        "native": ["--", churn, str(int(5_000_000 * scale))],
    }
    print("%-8s %-5s %10s %10s" % ("workload", "mode", "wall s", "cpu s"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, target in workloads.items():
            file_runs, live_runs = [], []
            for _ in range(args.reps):
                file_runs.append(run_file(memray, target, tmp))
                live_runs.append(run_live(memray, target))
            for mode, runs in (("file", file_runs), ("live", live_runs)):
                print("%-8s %-5s %10.3f %10.3f" % (name, mode, statistics.median(r[0] for r in runs),
                                                   statistics.median(r[1] for r in runs)))
            fw = statistics.median(r[0] for r in file_runs)
            lw = statistics.median(r[0] for r in live_runs)
            print("%-8s live/file wall %+.1f%%" % (name, 100 * (lw / fw - 1)))


if __name__ == "__main__":
    main()
