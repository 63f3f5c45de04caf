#!/usr/bin/python3
"""Benchmark of --aggregate against a full capture of the same run: capture size, wall and CPU
time against the plain program and against full mode, and the target's peak RSS.

usage: /usr/bin/python3 bench/bench_aggregate.py [--build DIR] [--reps N] [--python PATH]
environment:
  MEMRAY_BENCH_SCALE   multiplies workload sizes (default 1; e.g. 0.1 for a quick run)

Each repetition runs plain, full and --aggregate one after the other, in a rotating order
(interleaved, so machine noise hits all three alike); the table shows medians. CPU is user + system of the whole process
tree (memray's launcher, the target and its writer thread), from wait4's rusage; peak RSS is the
target's VmHWM (polled; the launcher is left out).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def descendants(pid):
    """pid and every process below it (from /proc/*/stat parent links)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measured(cmd, env=None, memray=None):
    """(wall s, cpu s, peak RSS bytes of the target) of `cmd` and its descendants.

    The peak RSS is the target's VmHWM, polled every 20 ms (wait4's ru_maxrss would carry the
    launcher's size over exec); the memray launcher itself is left out."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            break
        for p in descendants(proc.pid):
            try:
                if memray and os.path.realpath("/proc/%d/exe" % p) == memray:
                    continue
            except OSError:
                continue
            peak = max(peak, hwm_kb(p))
        time.sleep(0.02)
    wall = time.monotonic() - t0
    err = proc.stderr.read()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s\n" % (proc.returncode, " ".join(cmd),
                                                          err.decode(errors="replace")[-2000:]))
        raise SystemExit(1)
    # wait4's rusage covers the child and the descendants it waited for (memray run's target).
    return wall, usage.ru_utime + usage.ru_stime, peak * 1024


def bench(args, name, target, env, work):
    runs = {"plain": [], "full": [], "aggregate": []}
    sizes = {}
    modes = ("plain", "full", "aggregate")
    for rep in range(args.reps):
        # Rotated: no mode always runs right after the same other one (e.g. while the full
        # run's file is still being written back).
        for mode in modes[rep % 3:] + modes[:rep % 3]:
            out = os.path.join(work, "%s-%s.bin" % (name, mode))
            if os.path.exists(out):
                os.unlink(out)
            if mode == "plain":
                cmd = target
            else:
                cmd = [args.memray, "run", "-q", "-o", out]
                if mode == "aggregate":
                    cmd.append("--aggregate")
                cmd += (["--python", target[0], *target[1:]] if target[0].endswith(("python3", "python"))
                        else ["--", *target])
            runs[mode].append(measured(cmd, env, os.path.realpath(args.memray)))
            if mode != "plain":
                sizes[mode] = os.path.getsize(out)
    med = {m: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for m, rs in runs.items()}
    return name, med, sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3")
    args = ap.parse_args()
    args.memray = os.path.join(args.build, "src", "cli", "memray")
    native = os.path.join(args.build, "test", "integration", "native_churn")
    for exe in (args.memray, native):
        if not os.access(exe, os.X_OK):
            raise SystemExit("missing %s: build first (ninja -C %s)" % (exe, args.build))
    scale = float(os.environ.get("MEMRAY_BENCH_SCALE", "1"))
    work = tempfile.mkdtemp(prefix="memray-bench-agg-")
    n_native = max(1, int(10_000_000 * scale))
    rows = [
        bench(args, "native-churn", [native, str(n_native)], None, work),
        bench(args, "py_alloc", [args.python, os.path.join(HERE, "workloads", "py_alloc.py"),
                                 str(scale)], None, work),
        # Every object through malloc: the allocation-heavy Python case.
        bench(args, "py_alloc-malloc", [args.python, os.path.join(HERE, "workloads",
                                                                  "py_alloc.py"), str(scale)],
              {"PYTHONMALLOC": "malloc"}, work),
    ]
    print()
    print("--aggregate vs full capture (median of %d interleaved runs, scale %g)"
          % (args.reps, scale))
    hdr = ("workload", "mode", "wall s", "x plain", "cpu s", "x plain", "peak RSS MB",
           "capture B", "full/agg")
    print("%-15s %-9s %8s %8s %8s %8s %11s %12s %9s" % hdr)
    for name, med, sizes in rows:
        for mode in ("plain", "full", "aggregate"):
            wall, cpu, rss = med[mode]
            size = sizes.get(mode)
            ratio = ("%8.0fx" % (sizes["full"] / max(sizes["aggregate"], 1))
                     if mode == "aggregate" else "")
            print("%-15s %-9s %8.3f %7.2fx %8.3f %7.2fx %11.1f %12s %9s"
                  % (name, mode, wall, wall / med["plain"][0], cpu, cpu / med["plain"][1],
                     rss / 1e6, size if size is not None else "", ratio))
    for f in os.listdir(work):
        os.unlink(os.path.join(work, f))
    os.rmdir(work)


if __name__ == "__main__":
    main()
