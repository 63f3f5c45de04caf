#!/usr/bin/python3
"""Benchmark: how long memray's commands take to start, and the memory they start with.

For each command: median wall time, CPU time (user + sys, the kernel's accounting of the finished
process) and peak RSS (through GNU time) over --runs runs, after one warm-up. With --vs OTHER (a
second memray binary, e.g. a copy of the previous build) the two run in turn, A B A B ..., and
the ratios A/B are taken pair by pair, so they hold while the machine's speed drifts.

usage: /usr/bin/python3 bench/bench_startup.py [--build DIR] [--memray EXE] [--vs EXE]
                                               [--runs N] [--only NAME,...]

Commands (what issue 10 asks to start in a few milliseconds, and a report that does load the
symbolizer):
  version      memray --version
  attach       memray attach -f -o X PID   (whole attach of a fresh bench/workloads heartbeat
  detach       memray detach PID            target: start-up plus injection)
  run-pass     memray run --python /usr/bin/python3 -f -o X -c pass
  python-pass  /usr/bin/python3 -c pass     (alone, for run-pass's overhead)
  report-sym   memray summary X             on a --native capture of python3: symbolizes
  report-nosym memray summary --no-symbolize X
  true         /bin/true: the floor of this way of measuring (fork, exec, wait)
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
ROOT = os.path.dirname(HERE)
PYTHON = "/usr/bin/python3"


# A process forked from this script starts with this script's RSS, and the kernel's peak RSS
# (wait4's ru_maxrss) keeps that until exec: a floor of ~10 MB under every figure. GNU time
# forks from its own small image, so its %M is the command's own peak.
GNU_TIME = "/usr/bin/time"


def run_once(argv, env=None):
    """(wall s, cpu s, peak RSS KiB) of argv run to completion, output discarded."""
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        full = ([GNU_TIME, "-q", "-f", "%M", "-o", rss.name] if use_gnu_time() else []) + argv
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=env)  # a file, not a pipe: nothing blocks the child
        # wait4 reports this child and the descendants it waited for: the command's CPU time
        # (plus GNU time's own, well under a millisecond).
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError("%s: exit %d\n%s" % (" ".join(argv), code,
                                                   err.read().decode(errors="replace")[-2000:]))
        peak = int(rss.read().split()[-1]) if use_gnu_time() else ru.ru_maxrss
    return wall, ru.ru_utime + ru.ru_stime, peak


def use_gnu_time():
    return os.access(GNU_TIME, os.X_OK)


class Heartbeat:
    """A fresh attach target (bench/workloads/attach_heartbeat.c), ready when it says so."""

    def __init__(self, exe):
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready"):
            raise RuntimeError("heartbeat target did not start: %r" % line)
        self.pid = self.proc.pid

    def close(self):
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.heartbeat = os.path.join(args.build, "test", "attach", "attach_heartbeat")
        self.capture = None

    def native_capture(self, memray):
        """A --native capture of a small Python program, made once by the first binary."""
        if self.capture is None:
            self.capture = os.path.join(self.work, "native.bin")
            code = "import json\nx = [json.dumps({'a': list(range(i))}) for i in range(2000)]\n"
            subprocess.run([memray, "run", "--python", PYTHON, "--native", "-q", "-f", "-o",
                            self.capture, "-c", code], check=True, stdout=subprocess.DEVNULL)
        return self.capture

    def measure(self, name, memray, i):
        """One run of command `name` with binary `memray`: (wall s, cpu s, peak RSS KiB)."""
        out = os.path.join(self.work, "out%d.bin" % i)
        if name == "version":
            return run_once([memray, "--version"])
        if name == "run-pass":
            return run_once([memray, "run", "--python", PYTHON, "-q", "-f", "-o", out, "-c",
                             "pass"])
        if name == "true":
            return run_once(["/bin/true"])
        if name == "python-pass":
            return run_once([PYTHON, "-c", "pass"])
        if name == "report-sym":
            return run_once([memray, "summary", self.native_capture(memray)])
        if name == "report-nosym":
            return run_once([memray, "summary", "--no-symbolize", self.native_capture(memray)])
        if name in ("attach", "detach"):
            target = Heartbeat(self.heartbeat)
            try:
                a = run_once([memray, "attach", "-f", "-o", out, str(target.pid)])
                d = run_once([memray, "detach", str(target.pid)])
            finally:
                target.close()
            return a if name == "attach" else d
        raise ValueError(name)


COMMANDS = ["true", "version", "attach", "detach", "run-pass", "python-pass", "report-sym",
            "report-nosym"]
# Commands that do not run memray: measured once per pair, shown for reference.
REFERENCE = {"true", "python-pass"}


def fmt_row(name, xs):
    wall = statistics.median(x[0] for x in xs) * 1e3
    cpu = statistics.median(x[1] for x in xs) * 1e3
    rss = statistics.median(x[2] for x in xs) / 1024
    spread = (max(x[0] for x in xs) - min(x[0] for x in xs)) * 1e3
    return "%-13s %9.1f %9.1f %9.1f %10.1f" % (name, wall, cpu, spread, rss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--memray", help="binary to measure (default: BUILD/src/cli/memray)")
    ap.add_argument("--vs", help="a second memray binary to pair against (e.g. the previous "
                                 "build's, copied aside)")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(COMMANDS))
    args = ap.parse_args()
    memray = args.memray or os.path.join(args.build, "src", "cli", "memray")
    binaries = [memray] + ([args.vs] if args.vs else [])
    for b in binaries:
        if not os.access(b, os.X_OK):
            raise SystemExit("missing %s: build first (ninja -C %s)" % (b, args.build))
    names = args.only.split(",") if args.only else list(COMMANDS)
    for n in names:
        if n not in COMMANDS:
            raise SystemExit("unknown command %r (known: %s)" % (n, ", ".join(COMMANDS)))
    if ("attach" in names or "detach" in names) and not os.access(
            os.path.join(args.build, "test", "attach", "attach_heartbeat"), os.X_OK):
        print("skipping attach/detach: no test/attach/attach_heartbeat in %s" % args.build)
        names = [n for n in names if n not in ("attach", "detach")]

    work = tempfile.mkdtemp(prefix="memray-bench-startup-")
    bench = Bench(args, work)
    results = {n: [[] for _ in binaries] for n in names}
    try:
        for n in names:
            todo = binaries[:1] if n in REFERENCE else binaries
            for i in range(args.runs + 1):  # run 0 warms the page cache
                for k, b in enumerate(todo):
                    r = bench.measure(n, b, i)
                    if i:
                        results[n][k].append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("%d runs each (medians; spread = max - min wall)%s" % (
        args.runs, "" if use_gnu_time() else "; no %s: max RSS includes this script's ~10 MB "
        "before exec" % GNU_TIME))
    for k, b in enumerate(binaries):
        print("\n%s %s (%.1f MB)" % ("A" if k == 0 else "B", b, os.path.getsize(b) / 1e6))
        print("%-13s %9s %9s %9s %10s" % ("command", "wall ms", "cpu ms", "spread", "max RSS MB"))
        for n in names:
            if results[n][k]:
                print(fmt_row(n, results[n][k]))
    if len(binaries) == 2:
        print("\nA/B, median of the per-pair ratios")
        print("%-13s %9s %9s %10s" % ("command", "wall", "cpu", "max RSS"))
        for n in names:
            a, b = results[n]
            if not b:
                continue
            ratio = [statistics.median(x[j] / y[j] for x, y in zip(a, b) if y[j]) for j in range(3)]
            print("%-13s %9.2f %9.2f %10.2f" % (n, *ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
