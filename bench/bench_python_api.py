#!/usr/bin/python3
"""Benchmark of the Python API's reading side against the CLI on the same capture: wall time,
CPU time and peak memory of
  - api-records: memray.FileReader(f) and a pass over every get_allocation_records() record,
  - api-hwm:     memray.FileReader(f).get_high_watermark_allocation_records(),
  - api-stats:   memray.compute_statistics(f),
  - cli-stats:   memray stats f (the CLI's own one-pass throughput),
interleaved round by round (the machines are shared and noisy), with records/s for api-records.

usage: /usr/bin/python3 bench/bench_python_api.py [--build DIR] [--events N] [--rounds R]
                                                  [--python PATH] [--keep DIR]

The capture comes from bench/make_capture (built on demand; default 10 M events). The package is
imported from DIR/python (PYTHONPATH), as docs/python-api.md describes.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

API = {
    "api-records": "import memray,sys\n"
                   "with memray.FileReader(sys.argv[1]) as r:\n"
                   "    n = sum(1 for _ in r.get_allocation_records())\n"
                   "print(n)\n",
    "api-hwm": "import memray,sys\n"
               "with memray.FileReader(sys.argv[1]) as r:\n"
               "    print(len(list(r.get_high_watermark_allocation_records())))\n",
    "api-stats": "import memray,sys\n"
                 "print(memray.compute_statistics(sys.argv[1]).total_num_allocations)\n",
}


def measure(cmd, env=None):
    """(wall s, cpu s, peak RSS bytes, stdout) of one run, or None when it failed."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write("failed: %s\n%s\n" % (" ".join(cmd), err[-2000:]))
        return None
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out.decode().strip()


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--keep")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    make_capture = os.path.join(build, "bench", "make_capture")
    if not os.path.exists(make_capture):
        subprocess.run(["ninja", "-C", build, "-j2", "bench/make_capture"], check=True,
                       stdout=subprocess.DEVNULL)
    memray = os.path.join(build, "src", "cli", "memray")
    work = a.keep or tempfile.mkdtemp(prefix="bench-pyapi-")
    capture = os.path.join(work, "bench-%d.bin" % a.events)
    if not os.path.exists(capture):
        subprocess.run([make_capture, capture, str(a.events)], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=os.path.join(build, "python"))
    commands = {name: [a.python, "-c", code, capture] for name, code in API.items()}
    commands["cli-stats"] = [memray, "stats", capture]
    results = {name: [] for name in commands}
    for _ in range(a.rounds):
        for name, cmd in commands.items():
            r = measure(cmd, env)
            if r is None:
                sys.exit(1)
            results[name].append(r)
    size = os.path.getsize(capture)
    print("capture: %d events, %.1f MB, %d rounds, %s" % (a.events, size / 1e6, a.rounds, a.python))
    print("%-12s %9s %9s %10s %12s %9s" % ("", "wall s", "cpu s", "peak MB", "records/s", "cpu/cli"))
    cli_cpu = median([r[1] for r in results["cli-stats"]])
    for name, runs in results.items():
        wall = median([r[0] for r in runs])
        cpu = median([r[1] for r in runs])
        peak = max(r[2] for r in runs)
        rate = ""
        if name == "api-records":
            rate = "%.2fM" % (int(runs[0][3]) / wall / 1e6)
        print("%-12s %9.2f %9.2f %10.1f %12s %9.2f" % (name, wall, cpu, peak / 1e6, rate,
                                                       cpu / cli_cpu))


if __name__ == "__main__":
    main()
