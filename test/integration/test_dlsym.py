"""Allocator pointers taken with dlsym/dlvsym while tracking is on resolve to the hooks: a C
program that allocates only through such pointers (RTLD_DEFAULT, a dlopen handle of libc,
dlvsym with a version) has every block recorded with its size, and the frees through a
dlvsym'ed free are recorded too; a name we do not hook resolves as before, and RTLD_NEXT still
works (it is answered from the caller's position, so it is not redirected; docs/architecture.md).

usage: test_dlsym.py MEMRAY DLSYM_TARGET
"""

import sys

import mrtest


def main():
    memray, target = sys.argv[1:3]
    work = mrtest.scratch_dir("dlsym")
    c = mrtest.Checker("dlsym")
    capture = work + "/dlsym.bin"
    p = mrtest.memray_run(memray, capture, [target])
    if not c.equal(p.returncode, 0, "memray run exit code (stderr: %s)" % p.stderr):
        c.finish()
    blocks = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].startswith("0x"):
            blocks[parts[2]] = (int(parts[0]), int(parts[1], 16))
    c.check("done" in p.stdout and len(blocks) == 5, "target ran to the end")
    p, cap = mrtest.parse_capture(memray, capture)
    if not c.check(cap is not None, "parse"):
        c.finish()
    events = {}
    for e in cap.events:
        events.setdefault((e["address"], e["kind"]), []).append(e)
    expected_kind = {"dlsym": "MALLOC", "dlsym-handle": "MALLOC", "dlvsym": "MALLOC",
                     "dlsym-calloc": "CALLOC"}
    for via, kind in expected_kind.items():
        size, address = blocks.get(via, (0, 0))
        found = [e for e in events.get((address, kind), []) if e["size"] == size]
        c.equal(len(found), 1, "%s: %s of %d bytes recorded once" % (via, kind, size))
    for via in ("dlsym", "dlsym-handle", "dlvsym"):
        address = blocks.get(via, (0, 0))[1]
        c.equal(len(events.get((address, "FREE"), [])), 1,
                "%s: its free through dlvsym(libc, \"free\") recorded" % via)
    c.finish()


if __name__ == "__main__":
    main()
