"""Threads blocked in read() or nanosleep, or spinning with live xmm registers, while we attach
and detach three times: the reader gets every chunk written to its pipe (no EINTR, nothing
lost), and every thread that keeps values in xmm0-xmm15 across a blocking syscall (or in a pure
register loop) finds them intact. The target checks its own registers (targets/blocked_io.c).

usage: test_blocked_io.py MEMRAY BLOCKED_IO
"""

import os
import sys

import attachtest as at
import mrtest


def main():
    memray, exe = sys.argv[1:3]
    at.require_attach(memray)
    c = mrtest.Checker("attach-blocked-io")
    work = mrtest.scratch_dir("at-blocked")
    reader_r, reader_w = os.pipe()
    block_r, block_w = os.pipe()
    main_r, main_w = os.pipe()
    t = at.Target([exe, reader_r, block_r, main_r], pass_fds=(reader_r, block_r, main_r))
    for fd in (reader_r, block_r, main_r):
        os.close(fd)
    if not c.check(t.expect(r"^ready ") is not None, "target ready"):
        t.kill()
        c.finish()
    # The reader, xmm-block and main threads block in read(2) (x86_64 syscall 0).
    c.check(at.wait_blocked(t.pid, 0, 3), "the three blocking threads are inside read()")

    for cycle in range(3):
        capture = os.path.join(work, "cycle%d.bin" % cycle)
        p = at.attach(memray, t.pid, capture)
        at.check_attached(c, p, "attach %d" % cycle)
        token = "during-%d" % cycle
        os.write(reader_w, (token + "\n").encode())
        c.check(t.expect(r"^reader got " + token + "$", 10) is not None,
                "reader gets its data while attached (cycle %d)" % cycle)
        p = at.detach(memray, t.pid)
        at.check_detached(c, p, capture, "detach %d" % cycle)
        token = "after-%d" % cycle
        os.write(reader_w, (token + "\n").encode())
        c.check(t.expect(r"^reader got " + token + "$", 10) is not None,
                "reader gets its data after detach (cycle %d)" % cycle)
        c.check(t.running(), "target running after cycle %d" % cycle)
        p, data = mrtest.stats_json(memray, capture, work)
        c.equal(p.returncode, 0, "capture %d readable (stats --json)" % cycle)

    # Release the blocked threads; each checks its registers and reports.
    os.write(block_w, b"x")
    c.check(t.expect(r"^xmm xmm-block ", 10) is not None, "xmm-block thread reported")
    os.write(main_w, b"y")
    os.close(reader_w)
    code = t.finish(quit_command="", timeout=30)
    c.equal(code, 0, "target exit code")
    report = [l for l in t.output if l.startswith("xmm ") or l.startswith("reader ")]
    for name in ("xmm-block", "main", "xmm-sleep", "xmm-spin"):
        lines = [l for l in report if l.startswith("xmm %s " % name)]
        c.check(len(lines) == 1 and lines[0].startswith("xmm %s ok " % name),
                "%s: xmm registers intact across attach/detach (%r)" % (name, lines))
    bad = [l for l in t.output if "ERROR" in l or "CORRUPT" in l or "FAILED" in l]
    c.equal(bad, [], "no errors reported by the target")
    got = [l.split(" ", 2)[2] for l in t.output if l.startswith("reader got ")]
    c.equal(got, [w % i for i in range(3) for w in ("during-%d", "after-%d")],
            "reader received every chunk, in order")
    c.check("finished" in t.output, "target finished normally")
    for fd in (block_w, main_w):
        os.close(fd)
    c.finish()


if __name__ == "__main__":
    main()
