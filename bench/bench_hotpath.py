#!/usr/bin/python3
"""Benchmark: the recording hot path (issue 13). One table, one run: every workload under plain,
`memray run` in each mode (default, --native, --trace-python-allocators), heaptrack and Bloomberg's
memray where installed, interleaved and rotated per repetition, wall and CPU medians, ratios to
the plain run of the same repetition (their medians), and bytes per event of each capture.

usage: /usr/bin/python3 bench/bench_hotpath.py [--build DIR] [--reps N] [--python PATH] [--cpu N]
                                               [--only python,python-malloc,native,native-2t]
                                               [--bloomberg PYTHON]
environment:
  MEMRAY_BENCH_SCALE   multiplies workload sizes (default 1; e.g. 0.2 for a quick run)

The first row after the plain run is the floor: bench/workloads/bare_interposer.c, preloaded,
only counts malloc/calloc/realloc/free calls (no stacks, clock or writer).
Workloads: py_alloc.py (pymalloc), the same with PYTHONMALLOC=malloc (every object reaches
malloc), native_churn (10 M mallocs at scale 1) and native_churn with two threads of mixed sizes.
--bloomberg names a Python interpreter where Bloomberg's memray is installed (`-m memray`); by
default --python is probed. A tool that is missing is skipped and the table says so.
CPU is user + system of the process tree (rusage of the waited-for child): read it first on a
busy machine.

Before and after the table, the plain native_churn runs pinned to each CPU in turn. On a virtual
machine the CPUs can run at different speeds for minutes at a time (on 2026-12-06 one of this
machine's two was 1.5x slower than the other, on and off): a plain run then lands on either,
and a tracked one puts its writer thread on the second CPU, so the ratios are off by up to that
much. The table says so when the CPUs differed by more than 15%. --cpu N runs every command on
CPU N alone: the tracked program and its writer thread then share it, which adds thread switches
and removes the cost of moving the ring's lines between CPUs, but compares like with like on such
a machine (use it for A/B comparisons of the Python workloads; native churn's writer then falls
behind and the program waits for room in its ring).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # importing the other benches must not leave files in the checkout
from bench import count_events, heaptrack_file, remove_capture  # noqa: E402
from bench_native import remove_heaptrack_files, timed  # noqa: E402

ROOT = os.path.dirname(HERE)


def probe_bloomberg(python):
    """Version of Bloomberg's memray importable by `python`, or None. PYTHONPATH is cleared so
    that our own package (which a test environment may put there) is not what answers."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    try:
        probe = "import memray, memray._memray; print(memray.__version__)"
        p = subprocess.run([python, "-c", probe],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = p.stdout.decode().strip()
    return out if p.returncode == 0 and out else None


class Tools:
    def __init__(self, args):
        self.memray = args.memray
        self.heaptrack = shutil.which("heaptrack")
        self.bloomberg = args.bloomberg
        self.bloomberg_version = probe_bloomberg(args.bloomberg) if args.bloomberg else None


def modes_for(tools, python_workload):
    modes = ["plain", "bare interposer", "ours", "ours --native"]
    if python_workload:
        modes.append("ours --trace-python-allocators")
        if tools.bloomberg_version:
            modes += ["memray", "memray --native", "memray --trace-python-allocators"]
    if tools.heaptrack:
        modes.append("heaptrack")
    return modes


def command(tools, mode, cmd, capture):
    if mode in ("plain", "bare interposer"):
        return cmd
    if mode == "heaptrack":
        return [tools.heaptrack, "-o", capture, *cmd]
    tool, *flags = mode.split()
    if tool == "memray":  # Bloomberg's: python -m memray run ... script args
        return [tools.bloomberg, "-m", "memray", "run", "-f", "-q", "-o", capture, *flags,
                *cmd[1:]]
    run = [tools.memray, "run", "-f", "-q", "-o", capture, *flags]
    if os.path.basename(cmd[0]).startswith("python"):
        return [*run, "--python", cmd[0], *cmd[1:]]
    return [*run, "--", *cmd]


def capture_file(mode, capture):
    if mode == "heaptrack":
        return heaptrack_file(capture)
    return capture if os.path.exists(capture) else None


def bench_workload(args, tools, name, cmd, env, python_workload):
    modes = modes_for(tools, python_workload)
    samples = {m: [] for m in modes}
    captures = {m: os.path.join(args.work, "%s-%d.bin" % (name, i)) for i, m in enumerate(modes)}
    for rep in range(args.reps):
        k = rep % len(modes)
        for mode in modes[k:] + modes[:k]:
            if mode == "heaptrack":
                remove_heaptrack_files(captures[mode])
            else:
                remove_capture(captures[mode])
            run_env = env
            if mode == "bare interposer":  # the floor: counts the calls, records nothing
                run_env = dict(env or {}, LD_PRELOAD=tools.bare)
            samples[mode].append(timed(command(tools, mode, cmd, captures[mode]), env=run_env,
                                       cpu=args.cpu))
    rows = []
    plain = samples["plain"]
    workload_events = None
    for mode in modes:
        wall = statistics.median(w for w, _ in samples[mode])
        cpu = statistics.median(c for _, c in samples[mode])
        # Each repetition's ratio to the plain run of the same repetition, a minute apart at
        # most: a CPU that changes speed between repetitions moves both alike.
        row = {"workload": name, "mode": mode, "wall": wall, "cpu": cpu,
               "wall_x": statistics.median(w / p[0] for (w, _), p in zip(samples[mode], plain)),
               "cpu_x": statistics.median(c / p[1] for (_, c), p in zip(samples[mode], plain))}
        if mode == "plain":
            row["spread"] = max(c for _, c in plain) / min(c for _, c in plain)
        f = capture_file(mode, captures[mode])
        if f:
            row["bytes"] = os.path.getsize(f)
            if mode.startswith("ours"):
                row["events"] = count_events(tools.memray, f)
                if mode == "ours":
                    workload_events = row["events"]
        rows.append(row)
    # Other tools' captures are divided by the events our default mode saw in the same workload
    # (both record each malloc-level call; --trace-python-allocators ones have their own count).
    for row in rows:
        if "bytes" in row and "events" not in row and row["mode"] in ("heaptrack", "memray",
                                                                        "memray --native"):
            row["events"] = workload_events
    for m in modes:
        if m == "heaptrack":
            remove_heaptrack_files(captures[m])
        elif os.path.exists(captures[m]):
            os.unlink(captures[m])
    return rows


def cpu_speeds(churn):
    """CPU seconds of a plain native churn of 3 M mallocs on each CPU this process may use (the
    best of three runs each, interleaved)."""
    cpus = sorted(os.sched_getaffinity(0))
    best = {c: None for c in cpus}
    for _ in range(3):
        for c in cpus:
            _, t = timed([churn, "3000000"], cpu=c)
            best[c] = t if best[c] is None else min(best[c], t)
    return best


def speed_line(label, speeds):
    fastest = min(speeds.values())
    parts = ", ".join("CPU %d %.3f s" % (c, t) for c, t in speeds.items())
    return "%s: %s (slowest / fastest %.2fx)" % (label, parts, max(speeds.values()) / fastest)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--only", default="python,python-malloc,native,native-2t")
    ap.add_argument("--cpu", type=int, default=None,
                    help="run every command on this one CPU (see above)")
    ap.add_argument("--bloomberg", default=None,
                    help="Python interpreter with Bloomberg's memray installed (default: --python)")
    args = ap.parse_args()
    args.reps = max(args.reps, 3)
    if args.bloomberg is None:
        args.bloomberg = args.python
    args.memray = os.path.join(args.build, "src", "cli", "memray")
    churn = os.path.join(args.build, "test", "integration", "native_churn")
    bare = os.path.join(args.build, "bench", "libbare_interposer.so")
    for exe in (args.memray, churn):
        if not os.access(exe, os.X_OK):
            raise SystemExit("missing %s: build first (ninja -C %s)" % (exe, args.build))
    if not os.path.exists(bare):
        raise SystemExit("missing %s: build first (ninja -C %s)" % (bare, args.build))
    tools = Tools(args)
    tools.bare = bare
    scale = float(os.environ.get("MEMRAY_BENCH_SCALE", "1"))
    n_native = max(1, int(10_000_000 * scale))
    py_alloc = [args.python, os.path.join(HERE, "workloads", "py_alloc.py"), str(scale)]
    only = set(args.only.split(","))
    args.work = tempfile.mkdtemp(prefix="memray-bench-hotpath-")
    rows = []
    speeds_before = cpu_speeds(churn)
    try:
        if "python" in only:
            rows += bench_workload(args, tools, "python", py_alloc, None, True)
        if "python-malloc" in only:
            rows += bench_workload(args, tools, "python-malloc", py_alloc,
                                   {"PYTHONMALLOC": "malloc"}, True)
        if "native" in only:
            rows += bench_workload(args, tools, "native-%gM" % (n_native / 1e6),
                                   [churn, str(n_native)], None, False)
        if "native-2t" in only:
            rows += bench_workload(args, tools, "native-2t-mixed", [churn, str(n_native // 2), "2"],
                                   None, False)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    speeds_after = cpu_speeds(churn)

    print()
    where = "all on CPU %d" % args.cpu if args.cpu is not None else "on any CPU"
    print("memray hot path (median of %d interleaved runs, scale %g, %s; the ratios are medians "
          "of each run's ratio to the plain run of the same repetition)" % (args.reps, scale,
                                                                          where))
    print("%-16s %-32s %8s %8s %8s %8s %11s %8s" % ("workload", "mode", "wall s", "CPU s",
                                                  "wall x", "CPU x", "events", "B/event"))
    for r in rows:
        ev = r.get("events")
        bpe = "%8.2f" % (r["bytes"] / ev) if ev and "bytes" in r else "%8s" % "-"
        print("%-16s %-32s %8.3f %8.3f %7.2fx %7.2fx %11s %s" % (
            r["workload"], r["mode"], r["wall"], r["cpu"], r["wall_x"], r["cpu_x"],
            ev if ev is not None else "-", bpe))
    print(speed_line("CPU speed before (plain native churn, 3 M)", speeds_before))
    print(speed_line("CPU speed after", speeds_after))
    spread = max(r.get("spread", 1.0) for r in rows)
    if spread > 1.15:
        print("warning: a workload's plain runs took up to %.2fx each other's CPU time: the CPU "
              "changed speed during the table, and its ratios are rough" % spread)
    skew = max(max(s.values()) / min(s.values()) for s in (speeds_before, speeds_after))
    if skew > 1.15 and args.cpu is None:
        print("warning: this machine's CPUs ran at different speeds: the ratios above may be off "
              "by up to %.2fx; compare with --cpu N" % skew)
    if not tools.heaptrack:
        print("heaptrack not installed: no comparison with it")
    if not tools.bloomberg_version:
        print("Bloomberg's memray not importable by %s: no comparison with it" % args.bloomberg)
    else:
        print("Bloomberg's memray %s (%s)" % (tools.bloomberg_version, args.bloomberg))


if __name__ == "__main__":
    main()
