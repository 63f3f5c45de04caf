"""kill -9 of a tracked program mid-run: the capture stays readable, `stats` reports it as
truncated, and every allocation made more than ~1.5 s before the kill is in it.

usage: test_kill9.py MEMRAY STEADY_ALLOC
"""

import os
import select
import signal
import subprocess
import sys
import time

import mrtest

SIZE = 100019       # distinctive request size, one per 10 ms
RUN_FOR = 4.0       # seconds of tracking before the kill
GRACE = 1.5         # the payload may lose at most about one second of events


def main():
    memray, program = sys.argv[1:3]
    work = mrtest.scratch_dir("kill9")
    capture = os.path.join(work, "killed.bin")
    c = mrtest.Checker("kill9")

    cmd = [memray, "run", "-o", capture, "--", program, str(SIZE)]
    print("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    target = mrtest.find_target_pid(proc.pid, program)
    if not c.check(target is not None, "found the tracked process"):
        proc.kill()
        proc.wait()
        c.finish()

    progress = []  # (index, monotonic ms) reported by the target
    buf = b""
    deadline = time.monotonic() + RUN_FOR
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.05)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    kill_ms = time.monotonic() * 1000  # same clock as the target's CLOCK_MONOTONIC
    os.kill(target, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    buf += out
    for line in buf.decode().splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == "ALLOC":
            progress.append((int(f[1]), int(f[2])))
    print("memray run exit %d; stderr: %s" % (proc.returncode, err.decode().strip()))
    print("target reported %d allocations" % len(progress))
    c.check(len(progress) > 100, "target made progress before the kill (%d)" % len(progress))
    early = [i for i, ms in progress if ms < kill_ms - GRACE * 1000]
    c.check(len(early) > 50, "allocations older than %.1fs before the kill: %d" % (GRACE, len(early)))
    if not c.check(os.path.exists(capture) and os.path.getsize(capture) > 0, "capture exists"):
        c.finish()

    p = mrtest.run([memray, "stats", capture])
    c.check(not mrtest.crashed(p), "stats does not crash")
    c.equal(p.returncode, 0, "stats exit code on a killed capture")
    warning = [l for l in p.stderr.lower().splitlines() if "warning" in l]
    c.check(any("truncat" in l or "incomplete" in l for l in warning),
            "stats warns that the capture is truncated/incomplete")

    p, data = mrtest.stats_json(memray, capture, work)
    c.equal(p.returncode, 0, "stats --json exit code on a killed capture")

    p, cap = mrtest.parse_capture(memray, capture)
    c.check(not mrtest.crashed(p), "parse does not crash")
    if cap is not None:
        recorded = sum(1 for e in cap.events if e["kind"] == "MALLOC" and e["size"] == SIZE)
        print("capture holds %d of the %d allocations (%d made before kill-%.1fs)"
              % (recorded, len(progress), len(early), GRACE))
        c.check(recorded >= len(early), "capture holds every allocation made more than %.1fs "
                "before the kill (%d recorded, %d required)" % (GRACE, recorded, len(early)))
        c.check(recorded <= len(progress) + 1, "no more allocations than the target made")
        c.check(cap.trailer is None, "no trailer in a killed capture")
    if data is not None:
        c.check(data.get("allocator_type_distribution", {}).get("MALLOC", 0) >= len(early),
                "stats counts at least the early allocations")
    c.finish()


if __name__ == "__main__":
    main()
