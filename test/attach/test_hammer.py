"""N attach/detach cycles (default 50) on a target whose 4 threads hammer malloc/free with a single
malloc arena (MALLOC_ARENA_MAX=1), where stopping everything and calling dlopen deadlocks most of
the time: no deadlock (every command bounded), no crash, no heap corruption seen by the target,
the target keeps making progress, and every capture is readable and holds allocations.

usage: test_hammer.py MEMRAY HAMMER [CYCLES]
"""

import os
import re
import subprocess
import sys
import time

import attachtest as at
import mrtest

COMMAND_TIMEOUT = 30  # a deadlocked attach shows up as a timeout, not as a hung test


def main():
    memray, exe = sys.argv[1:3]
    cycles = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    at.require_attach(memray)
    c = mrtest.Checker("attach-hammer")
    work = mrtest.scratch_dir("at-hammer")
    t = at.Target([exe], env={"MALLOC_ARENA_MAX": "1"})
    if not c.check(t.expect(r"^ready ") is not None, "target ready"):
        t.kill()
        c.finish()
    last = at.wait_progress(t, at.count(t))  # the threads are hammering the allocator
    started = time.monotonic()
    readable = 0
    for i in range(cycles):
        capture = os.path.join(work, "c%02d.bin" % i)
        try:
            # -v on every other cycle: the steps of a re-attach are checked below
            p = at.attach(memray, t.pid, capture, extra=["-v"] if i % 2 else [],
                          timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            c.check(False, "cycle %d: attach finished within %ds (deadlock?)"
                    % (i, COMMAND_TIMEOUT))
            break
        if not c.equal(p.returncode, 0, "cycle %d: attach exit code" % i):
            break
        if i % 2:
            # A re-attach writes the settings into the loaded payload while the threads run and
            # borrows a thread for one call: no scratch mapping (mmap/munmap) while it is held.
            c.check("settings in its settings area" in p.stderr and "dlopen(" not in p.stderr,
                    "cycle %d: re-attach uses the payload's settings area" % i)
        at.wait_progress(t, at.count(t))  # the threads allocate while tracked
        try:
            p = at.detach(memray, t.pid, timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            c.check(False, "cycle %d: detach finished within %ds (deadlock?)"
                    % (i, COMMAND_TIMEOUT))
            break
        if not c.equal(p.returncode, 0, "cycle %d: detach exit code" % i):
            break
        if not c.check(t.running(), "cycle %d: target running" % i):
            break
        now = at.count(t)
        if not c.check(now is not None and last is not None and now > last,
                       "cycle %d: target threads still make progress (%r -> %r)" % (i, last, now)):
            break
        last = now
        p, data = mrtest.stats_json(memray, capture, work)
        if c.check(p.returncode == 0 and data is not None and
                   data.get("total_num_allocations", 0) > 0,
                   "cycle %d: capture readable with allocations (%r)"
                   % (i, data and data.get("total_num_allocations"))):
            readable += 1
        os.unlink(capture)
    elapsed = time.monotonic() - started
    print("%d cycles in %.1fs" % (cycles, elapsed))
    c.equal(readable, cycles, "readable captures")
    code = t.finish()
    c.equal(code, 0, "target exit code")
    fin = [l for l in t.output if l.startswith("finished ")]
    c.check(len(fin) == 1 and re.search(r"corrupt=0$", fin[0]) is not None,
            "target saw no heap corruption (%r)" % fin)
    c.finish()


if __name__ == "__main__":
    main()
