#!/usr/bin/python3
"""Benchmark: what attaching costs the target, measured from inside it. For `memray attach` /
`memray detach`, a bare debugger attach+detach (`gdb -p PID -batch`) and, where installed,
`heaptrack -p PID`: the command's wall time, the time from the command's start until the
target sees the tool's hooks active (its malloc GOT slot changes) or removed again, and the
longest stall of a 100 us heartbeat thread inside the target. Prints a table of medians.

usage: /usr/bin/python3 bench/bench_attach.py [--build DIR] [--runs N] [--no-heaptrack] [--no-rt]

Target: bench/workloads/attach_heartbeat.c (built as test/attach/attach_heartbeat). Each run
starts a fresh target for each tool, so every memray attach is a first attach (payload loaded
by the injector). Baseline: the same heartbeat measured with nothing attached, same duration.
Aims (issue 3): tracking active within 50 ms of the command starting; no stall over 5 ms.
"""

import argparse
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SETTLE = 0.3  # seconds the heartbeat keeps measuring after a command returned


class Heartbeat:
    realtime = False

    def __init__(self, exe):
        env = dict(os.environ)
        if Heartbeat.realtime:
            env["ATTACH_HEARTBEAT_RT"] = "1"
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        ready = self.lines.get(timeout=10)
        if not ready.startswith("ready"):
            raise SystemExit("heartbeat target did not start: %r" % ready)
        self.pid = self.proc.pid
        time.sleep(0.2)

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())

    def ask(self, command):
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()
        return self.lines.get(timeout=10)

    def reset(self):
        self.ask("reset")

    def report(self):
        line = self.ask("report")
        return {k: int(v) for k, v in (f.split("=") for f in line.split()[1:])}

    def close(self):
        if self.proc.poll() is None:
            try:
                self.ask("quit")
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def timed(cmd):
    t0 = time.monotonic_ns()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t1 = time.monotonic_ns()
    if p.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s\n" % (p.returncode, " ".join(cmd),
                                                          p.stderr.decode(errors="replace")))
        return None
    return t0, t1


def measure(target, cmd, event):
    """Runs cmd against the target; returns dict(cmd_ms, effect_ms, stall_ms) or None."""
    target.reset()
    t = timed(cmd)
    if t is None:
        return None
    time.sleep(SETTLE)
    r = target.report()
    effect = r[event]
    return {"cmd_ms": (t[1] - t[0]) / 1e6,
            "effect_ms": (effect - t[0]) / 1e6 if effect else None,
            "stall_ms": r["max_gap_us"] / 1e3}


def run_memray(args, exe, work, i):
    target = Heartbeat(exe)
    try:
        target.reset()
        time.sleep(SETTLE)
        base = target.report()["max_gap_us"] / 1e3
        capture = os.path.join(work, "run%d.bin" % i)
        a = measure(target, [args.memray, "attach", "-f", "-o", capture, str(target.pid)],
                    "changed_ns")
        d = measure(target, [args.memray, "detach", str(target.pid)], "restored_ns") if a else None
        return base, a, d
    finally:
        target.close()


def run_gdb(exe):
    target = Heartbeat(exe)
    try:
        return measure(target, ["gdb", "-p", str(target.pid), "-batch", "-nx"], "changed_ns")
    finally:
        target.close()


def run_heaptrack(exe, work, i):
    """heaptrack -p records until the target exits; we measure its attach only."""
    target = Heartbeat(exe)
    prefix = os.path.join(work, "heaptrack%d" % i)
    try:
        target.reset()
        t0 = time.monotonic_ns()
        ht = subprocess.Popen(["heaptrack", "-p", str(target.pid), "-o", prefix],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=work)  # -p ignores -o: files land in cwd
        deadline = time.monotonic() + 30
        r = target.report()
        while not r["changed_ns"] and time.monotonic() < deadline and ht.poll() is None:
            time.sleep(0.02)
            r = target.report()
        time.sleep(SETTLE)
        r = target.report()
        ok = bool(r["changed_ns"])
        result = {"cmd_ms": None, "effect_ms": (r["changed_ns"] - t0) / 1e6 if ok else None,
                  "stall_ms": r["max_gap_us"] / 1e3}
        target.close()
        try:
            ht.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(ht.pid, signal.SIGKILL)
            ht.wait()
        if not ok:
            sys.stderr.write("heaptrack -p never became active (exit %r)\n%s\n"
                             % (ht.returncode, ht.stdout.read().decode(errors="replace")[-800:]))
        return result
    finally:
        target.close()


def med(rows, key):
    xs = [r[key] for r in rows if r and r.get(key) is not None]
    return (statistics.median(xs), max(xs), len(xs)) if xs else None


def fmt(v):
    if v is None:
        return "-"
    m, worst, n = v
    return "%8.1f (max %7.1f)" % (m, worst)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-heaptrack", action="store_true")
    ap.add_argument("--no-rt", action="store_true",
                    help="do not run the heartbeat thread SCHED_FIFO (the default when root)")
    args = ap.parse_args()
    Heartbeat.realtime = os.geteuid() == 0 and not args.no_rt
    args.memray = os.path.join(args.build, "src", "cli", "memray")
    exe = os.path.join(args.build, "test", "attach", "attach_heartbeat")
    for f in (args.memray, exe):
        if not os.access(f, os.X_OK):
            raise SystemExit("missing %s: build first (ninja -C %s)" % (f, args.build))
    have_gdb = bool(shutil.which("gdb"))
    have_heaptrack = bool(shutil.which("heaptrack")) and not args.no_heaptrack
    work = tempfile.mkdtemp(prefix="memray-bench-attach-")

    base, att, det, gdb, heap = [], [], [], [], []
    for i in range(args.runs):
        b, a, d = run_memray(args, exe, work, i)
        base.append({"stall_ms": b})
        att.append(a)
        det.append(d)
        if have_gdb:
            gdb.append(run_gdb(exe))
        if have_heaptrack:
            heap.append(run_heaptrack(exe, work, i))
        print("run %d/%d: attach %s, detach %s" % (
            i + 1, args.runs,
            a and "%.1f ms active, %.1f ms stall" % (a["effect_ms"] or -1, a["stall_ms"]),
            d and "%.1f ms restored, %.1f ms stall" % (d["effect_ms"] or -1, d["stall_ms"])),
            flush=True)

    print()
    print("Attach cost seen from inside the target, %d runs, medians (ms; worst in brackets); "
          "heartbeat thread %s" % (args.runs, "SCHED_FIFO" if Heartbeat.realtime else
                                   "SCHED_OTHER"))
    print("%-32s %-22s %-22s %-22s" % ("", "command wall time", "hooks active/removed",
                                       "longest stall"))
    print("%-32s %-22s %-22s %-22s" % ("baseline (nothing attached)", "-", "-",
                                       fmt(med(base, "stall_ms"))))
    for name, data in (("memray attach", att), ("memray detach", det),
                       ("gdb -p -batch (attach+detach)", gdb if have_gdb else None),
                       ("heaptrack -p (attach)", heap if have_heaptrack else None)):
        if data is None:
            print("%-32s not installed" % name)
            continue
        print("%-32s %-22s %-22s %-22s" % (name, fmt(med(data, "cmd_ms")),
                                           fmt(med(data, "effect_ms")),
                                           fmt(med(data, "stall_ms"))))
    a_eff, a_stall = med(att, "effect_ms"), med(att, "stall_ms")
    d_stall = med(det, "stall_ms")
    print()
    print("aim: active within 50 ms: %s; no stall over 5 ms: attach %s, detach %s" % (
        "met" if a_eff and a_eff[0] <= 50 else "NOT met",
        "met" if a_stall and a_stall[0] <= 5 else "NOT met",
        "met" if d_stall and d_stall[0] <= 5 else "NOT met"))
    print("(the baseline row is this machine's own scheduling noise on a 100 us sleeper)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
