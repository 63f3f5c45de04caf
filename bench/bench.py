#!/usr/bin/python3
"""Benchmark: overhead of `memray run` against plain runs (and heaptrack where installed), bytes
per event of the capture, and `memray stats` throughput. Prints one table.

usage: /usr/bin/python3 bench/bench.py [--build DIR] [--reps N] [--python PATH]
environment:
  MEMRAY_BENCH_SCALE   multiplies workload sizes (default 1; e.g. 0.1 for a quick run)
  MEMRAY_BENCH_EVENTS  events in the `stats` throughput capture (default 100000000)

Runs alternate plain / memray / heaptrack for each repetition so that machine noise hits all of
them alike; the table shows medians.
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


def timed(cmd, env=None, cwd=None):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s\n" % (p.returncode, " ".join(cmd),
                                                          p.stderr.decode(errors="replace")[-2000:]))
        raise SystemExit(1)
    return dt


def remove_capture(path):
    """Removes a capture left from an earlier repetition: `memray run -f` would truncate it, and
    freeing its page cache (~10 ms for 50 MB here) would count as the run's recording cost."""
    if os.path.exists(path):
        os.unlink(path)


def count_events(memray, capture):
    """Allocation + deallocation events, from the trailer `memray parse` prints last (streamed)."""
    p = subprocess.Popen([memray, "parse", capture], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    events, trailer = 0, None
    kinds = ("MALLOC", "FREE", "CALLOC", "REALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN",
             "VALLOC", "PVALLOC", "MMAP", "MUNMAP", "PYMALLOC")
    for raw in p.stdout:
        head = raw.split(b" ", 1)[0].decode(errors="replace").rstrip(":").upper()
        if head in ("ALLOCATION", "DEALLOCATION") or head.startswith(kinds):
            events += 1
        elif head == "TRAILER":
            trailer = raw.decode(errors="replace")
    p.wait()
    if trailer:
        fields = dict(f.split("=", 1) for f in trailer.split()[1:] if "=" in f)
        try:
            return int(fields["allocations"]) + int(fields["deallocations"])
        except (KeyError, ValueError):
            pass
    return events


def heaptrack_file(prefix):
    for ext in (".zst", ".gz", ""):
        if os.path.exists(prefix + ext):
            return prefix + ext
    return None


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def bench_workload(args, name, cmd, env, work, have_heaptrack, event_hint=None):
    plain, tracked, heap = [], [], []
    capture = os.path.join(work, name + ".bin")
    hprefix = os.path.join(work, name + ".heaptrack")
    for rep in range(args.reps):
        plain.append(timed(cmd, env=env))
        remove_capture(capture)
        tracked.append(timed([args.memray, "run", "-f", "-q", "-o", capture, "--", *cmd]
                             if not cmd[0].endswith(("python", "python3")) else
                             [args.memray, "run", "-f", "-q", "-o", capture, "--python", cmd[0],
                              *cmd[1:]], env=env))
        if have_heaptrack:
            for f in os.listdir(work):
                if f.startswith(name + ".heaptrack"):
                    os.unlink(os.path.join(work, f))
            heap.append(timed(["heaptrack", "-o", hprefix, *cmd], env=env))
    size = os.path.getsize(capture)
    events = count_events(args.memray, capture)
    row = {"name": name, "plain": median(plain), "memray": median(tracked),
           "events": events, "bytes": size}
    hfile = heaptrack_file(hprefix) if have_heaptrack else None
    if hfile:
        row["heaptrack"] = median(heap)
        row["heaptrack_bytes"] = os.path.getsize(hfile)
    return row


def stats_throughput(args, work):
    """`memray stats` on a capture of MEMRAY_BENCH_EVENTS events (native_churn, malloc+free)."""
    n_events = int(float(os.environ.get("MEMRAY_BENCH_EVENTS", "100000000")))
    capture = os.path.join(work, "big.bin")
    allocations = n_events // 2
    t = timed([args.memray, "run", "-f", "-q", "-o", capture, "--", args.native_churn,
               str(allocations)])
    events = count_events(args.memray, capture)
    times = [timed([args.memray, "stats", capture]) for _ in range(max(1, min(args.reps, 3)))]
    out = {"events": events, "bytes": os.path.getsize(capture), "record_s": t,
           "stats_s": median(times)}
    os.unlink(capture)
    # The report side's synthetic capture (bench/make_capture, built on demand) when present:
    # a Python-service-like mix of stacks, threads and lifetimes.
    maker = os.path.join(args.build, "bench", "make_capture")
    if os.access(maker, os.X_OK):
        timed([maker, capture, str(n_events)])
        times = [timed([args.memray, "stats", capture]) for _ in range(max(1, min(args.reps, 3)))]
        out["synthetic_s"] = median(times)
        out["synthetic_bytes"] = os.path.getsize(capture)
        os.unlink(capture)
    return out


def n_events_for(_s):
    return int(float(os.environ.get("MEMRAY_BENCH_EVENTS", "100000000")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--skip-stats", action="store_true")
    args = ap.parse_args()
    args.reps = max(args.reps, 3)
    args.memray = os.path.join(args.build, "src", "cli", "memray")
    args.native_churn = os.path.join(args.build, "test", "integration", "native_churn")
    for exe in (args.memray, args.native_churn):
        if not os.access(exe, os.X_OK):
            raise SystemExit("missing %s: build first (ninja -C %s)" % (exe, args.build))
    scale = float(os.environ.get("MEMRAY_BENCH_SCALE", "1"))
    have_heaptrack = bool(shutil.which("heaptrack") and shutil.which("heaptrack_print"))
    work = tempfile.mkdtemp(prefix="memray-bench-")
    py_script = os.path.join(HERE, "workloads", "py_alloc.py")
    n_native = max(1, int(10_000_000 * scale))

    rows = [
        bench_workload(args, "python", [args.python, py_script, str(scale)], None, work,
                       have_heaptrack),
        bench_workload(args, "python-malloc", [args.python, py_script, str(scale)],
                       {"PYTHONMALLOC": "malloc"}, work, have_heaptrack),
        bench_workload(args, "native-%dM" % (n_native // 1_000_000), [args.native_churn,
                       str(n_native)], None, work, have_heaptrack),
    ]

    print()
    print("memray benchmark (median of %d alternating runs, scale %g)" % (args.reps, scale))
    hdr = ("workload", "plain s", "memray s", "memray x", "events", "B/event", "heaptrack s",
           "heaptrack x", "ht/memray time", "ht B/event", "ht/memray bytes")
    print("%-16s %8s %9s %8s %11s %8s %11s %11s %14s %10s %15s" % hdr)
    for r in rows:
        ev = max(r["events"], 1)
        line = "%-16s %8.3f %9.3f %7.2fx %11d %8.2f" % (
            r["name"], r["plain"], r["memray"], r["memray"] / r["plain"], r["events"],
            r["bytes"] / ev)
        if "heaptrack" in r:
            line += " %11.3f %10.2fx %13.2fx %10.2f %14.2fx" % (
                r["heaptrack"], r["heaptrack"] / r["plain"], r["heaptrack"] / r["memray"],
                r["heaptrack_bytes"] / ev, r["heaptrack_bytes"] / max(r["bytes"], 1))
        else:
            line += " %11s" % "n/a"
        print(line)
    if not have_heaptrack:
        print("(heaptrack not installed: no comparison)")

    if not args.skip_stats:
        s = stats_throughput(args, work)
        print()
        print("stats throughput: %d events, %.1f MB capture (%.2f B/event), recorded in %.1f s; "
              "`memray stats` %.2f s = %.1f M events/s"
              % (s["events"], s["bytes"] / 1e6, s["bytes"] / max(s["events"], 1), s["record_s"],
                 s["stats_s"], s["events"] / s["stats_s"] / 1e6))
        if "synthetic_s" in s:
            print("stats throughput on bench/make_capture's synthetic capture of %d events "
                  "(%.1f MB): %.2f s = %.1f M events/s"
                  % (n_events_for(s), s["synthetic_bytes"] / 1e6, s["synthetic_s"],
                     n_events_for(s) / s["synthetic_s"] / 1e6))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
