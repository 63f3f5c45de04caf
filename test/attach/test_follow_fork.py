"""`memray attach --follow-fork`: children forked after the attach record into
<output>.<child pid> (a child that exits finalizes its capture; a running one answers
`memray detach <child pid>`), a child forked before the attach is not tracked, and the parent's
capture holds only the parent's allocations.

usage: test_follow_fork.py MEMRAY FORK_SERVICE
"""

import os
import re
import sys

import attachtest as at
import mrtest


def sizes_count(c, memray, path, pid, expect):
    p, cap = mrtest.parse_capture(memray, path)
    if not c.check(p.returncode == 0 and cap is not None, "%s parses" % path):
        return
    c.check(cap.trailer is not None, "%s has its trailer" % path)
    m = re.search(r"^HEADER .*\bpid=(\d+)", p.stdout, re.M)
    c.check(m is not None and int(m.group(1)) == pid, "%s: header names process %d" % (path, pid))
    for size, count in expect:
        got = sum(1 for e in cap.events if e["kind"] == "MALLOC" and e["size"] == size)
        c.equal(got, count, "%s: mallocs of %d bytes" % (path, size))


def main():
    memray, exe = sys.argv[1:3]
    at.require_attach(memray)
    c = mrtest.Checker("attach-follow-fork")
    work = mrtest.scratch_dir("at-ff")
    out = os.path.join(work, "af.bin")
    t = at.Target([exe])
    try:
        k_sizes = r"^SIZES child=(\d+) late=(\d+) early=(\d+) main=(\d+)"
        k_ready = r"^ready (\d+) early=(\d+)"
        m = re.search(k_sizes, t.expect(k_sizes) or "")
        r = re.search(k_ready, t.expect(k_ready) or "")
        if not c.check(m is not None and r is not None, "target ready"):
            return
        child_size, late_size, early_size, main_size = (int(x) for x in m.groups())
        early = int(r.group(2))

        p = at.attach(memray, t.pid, out, extra=["--follow-fork"])
        if not at.check_attached(c, p, "attach --follow-fork"):
            return
        f = re.search(r"^forked (\d+)", t.request("fork 4", r"^forked \d+") or "")
        h = re.search(r"^held (\d+)", t.request("hold 3", r"^held \d+") or "")
        if not c.check(f is not None and h is not None, "children forked after the attach"):
            return
        forked, held = int(f.group(1)), int(h.group(1))
        # The held child is still running: its own session stops on request.
        p = at.detach(memray, held)
        c.equal(p.returncode, 0, "memray detach <child pid>")
        c.check(("af.bin.%d" % held) in p.stdout, "detach of the child names its capture")
        c.check(t.request("release", r"^released") is not None, "held child released")
        c.check(t.request("early", r"^early done") is not None, "early child finished")
        c.check(t.request("m 2", r"^done m 2") is not None, "parent allocated")
        p = at.detach(memray, t.pid)
        at.check_detached(c, p, out, "detach of the parent")

        c.equal(sorted(os.listdir(work)),
                sorted(["af.bin", "af.bin.%d" % forked, "af.bin.%d" % held]),
                "captures of the parent and the two children forked after the attach only")
        sizes_count(c, memray, out, t.pid, [(main_size, 2), (child_size, 0), (late_size, 0),
                                            (early_size, 0)])
        sizes_count(c, memray, "%s.%d" % (out, forked), forked, [(child_size, 4), (main_size, 0)])
        # Tracking of the held child stopped at its detach: the later allocations are not in it.
        sizes_count(c, memray, "%s.%d" % (out, held), held, [(child_size, 3), (late_size, 0)])
        c.check(not os.path.exists("%s.%d" % (out, early)), "early child wrote nothing")
        c.check(t.running() and t.request("m 1", r"^done m 1") is not None, "service still runs")
    finally:
        t.finish()
    c.finish()


if __name__ == "__main__":
    main()
