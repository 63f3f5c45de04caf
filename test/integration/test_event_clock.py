"""Every event clock on every machine: the same workload recorded with MEMRAY_EVENT_CLOCK=tsc,
=monotonic, and without the variable ("coarse": a lone recording thread stamps with
CLOCK_MONOTONIC_COARSE, up to one kernel tick early). The target brackets each allocation and
free with CLOCK_MONOTONIC reads; the capture's times must fall inside those windows (relative to
the first allocation, since the capture's zero is the payload's start), frees must follow their
allocations, events and memory samples must be in time order.

usage: test_event_clock.py MEMRAY CLOCK_TARGET tsc|monotonic|coarse
"""

import os
import re
import sys
import time

import mrtest

# Capture times have millisecond resolution: an event is stamped with the last Time record, at or
# up to 1 ms before it happened. The TSC-to-time line adds well under a microsecond.
SLACK_US = 1000 + 100

_REC = re.compile(r"^(ALLOCATION|DEALLOCATION|MEMORY_SAMPLE) (.*)$")
_KV = re.compile(r"(\w+)=(\S+)")


def cpu_has_rdtscp():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "rdtscp" in line.split()
    except OSError:
        pass
    return False


def main():
    memray, target, mode = sys.argv[1:4]
    if mode == "tsc" and not cpu_has_rdtscp():
        mrtest.skip("this CPU has no rdtscp (not in the flags of /proc/cpuinfo): the payload never "
                    "uses the TSC here, MEMRAY_EVENT_CLOCK=tsc falls back to CLOCK_MONOTONIC")
    work = mrtest.scratch_dir("clock")
    capture = os.path.join(work, "clock.bin")
    c = mrtest.Checker("event-clock-" + mode)

    env = {"MEMRAY_LOG_LEVEL": "0"}
    slack_us = SLACK_US
    if mode == "coarse":
        said = "event clock: monotonic (coarse while one thread records)"
        # Linux's CLOCK_MONOTONIC_COARSE is clock id 6; its resolution is the kernel's tick.
        slack_us += int(time.clock_getres(6) * 1e6) + 1
    else:
        env["MEMRAY_EVENT_CLOCK"] = mode
        said = "event clock: %s\n" % mode
    p = mrtest.memray_run(memray, capture, [target], env=env)
    c.equal(p.returncode, 0, "memray run exit code")
    c.check(said in p.stderr, "the payload says it stamps with %s" % mode)
    windows = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if f[:1] == ["WINDOW"] and len(f) == 6:
            windows[int(f[1])] = [int(x) for x in f[2:]]
    if not c.check(len(windows) == 12, "target printed its 12 windows"):
        c.finish()

    p = mrtest.run([memray, "parse", capture], timeout=300)
    c.equal(p.returncode, 0, "parse exit code")
    events, samples = [], []
    for line in p.stdout.splitlines():
        m = _REC.match(line.strip())
        if not m:
            continue
        f = dict(_KV.findall(m.group(2)))
        if m.group(1) == "MEMORY_SAMPLE":
            samples.append(int(f["time_us"]))
        else:
            events.append((m.group(1), int(f["time_us"]), int(f["address"], 16),
                           int(f.get("size", "0"))))

    times = [e[1] for e in events]
    c.check(all(a <= b for a, b in zip(times, times[1:])), "event times never go back in file order")
    c.check(len(samples) >= 2, "memory samples recorded (%d)" % len(samples))
    c.check(all(a <= b for a, b in zip(samples, samples[1:])), "memory samples in time order")

    # Each size once: its allocation and the free of the same address after it.
    found = {}
    for i, (kind, t, addr, size) in enumerate(events):
        if kind == "ALLOCATION" and size in windows and size not in found:
            free = next(((j, ft) for j, (k2, ft, a2, _) in enumerate(events[i + 1:], i + 1)
                         if k2 == "DEALLOCATION" and a2 == addr), None)
            found[size] = (t, free)
    if not c.equal(sorted(found), sorted(windows), "every distinctive allocation recorded"):
        c.finish()
    first = min(windows)
    t_ref = found[first][0]
    w_ref = windows[first]
    bad = []
    for size in sorted(windows):
        a0, a1, f0, f1 = windows[size]
        t_alloc, free = found[size]
        if free is None:
            bad.append("%d: no free after the allocation" % size)
            continue
        t_free = free[1]
        # Relative to the first allocation, which happened somewhere in [w_ref[0], w_ref[1]].
        for what, t, lo, hi in (("alloc", t_alloc, a0, a1), ("free", t_free, f0, f1)):
            rel = t - t_ref
            lo_us = (lo - w_ref[1]) // 1000 - slack_us
            hi_us = (hi - w_ref[0]) // 1000 + 1 + slack_us
            if not lo_us <= rel <= hi_us:
                bad.append("%d %s at +%d us, window [%d, %d] us" % (size, what, rel, lo_us, hi_us))
        if t_free < t_alloc:
            bad.append("%d: free at %d us before its allocation at %d us" % (size, t_free, t_alloc))
    c.check(not bad, "event times inside the target's CLOCK_MONOTONIC windows%s"
            % ("" if not bad else ": " + "; ".join(bad)))
    c.finish()


if __name__ == "__main__":
    main()
