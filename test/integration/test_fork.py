"""Fork: the child of a tracked program allocates and exits; the parent's capture is intact
(finalized, readable) and holds the parent's allocations and none of the child's.

usage: test_fork.py MEMRAY FORK_TARGET
"""

import os
import sys

import mrtest


def main():
    memray, program = sys.argv[1:3]
    work = mrtest.scratch_dir("fork")
    capture = os.path.join(work, "fork.bin")
    c = mrtest.Checker("fork")

    p = mrtest.memray_run(memray, capture, [program])
    c.equal(p.returncode, 0, "memray run exit code (target checks its child's status)")
    expect, absent = mrtest.parse_expectations(p.stdout)
    c.check(len(expect) == 2 and len(absent) == 1, "target announced its allocations")
    c.equal(p.stderr.strip(), "", "nothing on stderr (no payload complaints from the child)")
    c.equal(sorted(os.listdir(work)), ["fork.bin"], "no stray files next to the capture")
    if not c.check(os.path.exists(capture), "capture file written"):
        c.finish()

    p = mrtest.run([memray, "stats", capture])
    c.equal(p.returncode, 0, "stats exit code")
    c.check("truncat" not in p.stderr.lower() and "incomplete" not in p.stderr.lower(),
            "capture is complete (no truncation warning)")

    p, cap = mrtest.parse_capture(memray, capture)
    c.equal(p.returncode, 0, "parse exit code")
    if cap is not None:
        c.check(cap.trailer is not None, "capture has its trailer")
        for _, kind, size, count in expect:
            got = sum(1 for e in cap.events if e["kind"] == kind and e["size"] == size)
            c.equal(got, count, "parent's %s of %d bytes" % (kind, size))
        for size in absent:
            got = sum(1 for e in cap.events if e["size"] == size)
            c.equal(got, 0, "child's allocations of %d bytes absent" % size)
        pids = {info["tid"] for info in cap.threads.values()}
        c.check(len(pids) == 1, "one thread recorded (the parent's), tids %r" % sorted(pids))
    c.finish()


if __name__ == "__main__":
    main()
