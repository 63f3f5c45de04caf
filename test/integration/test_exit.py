"""A program that ends with _exit() / _Exit() / os._exit() (no atexit handlers, no destructors)
keeps every allocation it made before, a finalized capture (trailer), and its exit status.

usage: test_exit.py MEMRAY native EXIT_TARGET (_exit|_Exit)
       test_exit.py MEMRAY python OS_EXIT_SCRIPT KEY     (KEY: an interpreter of test/pythons.py)
"""

import os
import sys

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)


def check_capture(c, memray, capture, want):
    """want: list of (describe, predicate on an event, count)."""
    if not c.check(os.path.exists(capture), "capture file written"):
        return
    p, cap = mrtest.parse_capture(memray, capture)
    c.equal(p.returncode, 0, "parse exit code")
    if cap is None:
        return
    c.check(cap.trailer is not None, "capture finalized (trailer present), not cut")
    for what, pred, count in want:
        got = sum(1 for e in cap.events if pred(e))
        c.equal(got, count, what)


def main():
    memray, mode, target, arg = sys.argv[1:5]
    work = mrtest.scratch_dir("exit")
    capture = os.path.join(work, "exit.bin")
    c = mrtest.Checker("exit-%s-%s" % (mode, arg))
    if mode == "native":
        p = mrtest.memray_run(memray, capture, [target, arg])
        c.equal(p.returncode, 3 if arg == "_exit" else 4, "exit status of the target kept")
        expect, _ = mrtest.parse_expectations(p.stdout)
        c.check(len(expect) == 3, "target announced its allocations")
        want = [("MALLOC of %d bytes" % size,
                 (lambda e, size=size, kind=kind: e["kind"] == kind and e["size"] == size), count)
                for _, kind, size, count in expect]
    else:
        python = pythons.require(arg)
        p = mrtest.memray_run(memray, capture, [target], python=python)
        c.equal(p.returncode, 3, "exit status of os._exit(3) kept")
        sizes = [int(l.split()[1]) for l in p.stdout.splitlines() if l.startswith("SIZE ")]
        c.check(len(sizes) == 3, "script announced its sizes")
        # bytearray(n) allocates n + 1 bytes; a little slack for interpreter headers.
        want = [("allocation of bytearray(%d)" % n,
                 (lambda e, n=n: e["kind"] in ("MALLOC", "PYMALLOC_MALLOC") and n < e["size"] <= n + 64),
                 1) for n in sizes]
    check_capture(c, memray, capture, want)
    c.finish()


if __name__ == "__main__":
    main()
