"""Disk full / unwritable output: the target finishes normally (same stdout, same exit code) and
the payload says so in one line on stderr.

usage: test_disk_full.py MEMRAY BUSY_PROGRAM [ARGS...]
"""

import os
import stat
import subprocess
import sys

import mrtest


def check_run(c, memray, output, target, plain, label, extra=()):
    p = mrtest.memray_run(memray, output, target, extra=extra, timeout=300)
    c.equal(p.returncode, plain.returncode, "%s: target's exit code unchanged" % label)
    # Without -q `memray run` adds its own lines to stdout; the target's are the RESULT lines.
    ours = [l for l in p.stdout.splitlines() if l.startswith("RESULT")]
    c.equal(ours, plain.stdout.splitlines(), "%s: target's stdout unchanged" % label)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    c.equal(len(lines), 1, "%s: one line on stderr" % label)
    c.check(len(lines) == 1 and lines[0].startswith("memray") and "killed" not in lines[0],
            "%s: the line comes from memray (%r)" % (label, lines[:1]))


def main():
    memray, program, *args = sys.argv[1:]
    target = [program, *args]
    c = mrtest.Checker("disk-full")
    plain = mrtest.run(target)
    c.check(plain.returncode not in (0,) and plain.stdout, "target has its own output and code")

    # A full device (like /dev/full: every write fails with ENOSPC), made privately so that a
    # payload that wrongly deletes its output cannot take the system's /dev/full with it.
    # -f because the node exists.
    nodes = mrtest.scratch_dir("devfull")
    full = os.path.join(nodes, "full")
    m = subprocess.run(["mknod", "-m", "666", full, "c", "1", "7"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if m.returncode != 0:
        print("cannot make a full device node here (%s)" % m.stdout.decode().strip())
    else:
        check_run(c, memray, full, target, plain, "full device", extra=("-f",))
        st = os.stat(full) if os.path.exists(full) else None
        c.check(st is not None and stat.S_ISCHR(st.st_mode),
                "the existing output (a device node) is neither deleted nor replaced")
        if os.path.exists(full):
            os.unlink(full)
    os.rmdir(nodes)

    # A tiny tmpfs: the header fits, the stream soon does not.
    mnt = mrtest.scratch_dir("tmpfs")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if m.returncode != 0:
        print("cannot mount a tmpfs here (%s); /dev/full case only"
              % m.stdout.decode().strip())
    else:
        try:
            capture = os.path.join(mnt, "full.bin")
            check_run(c, memray, capture, target, plain, "64k tmpfs")
            # What did get written must still be readable up to its last complete block.
            if os.path.exists(capture) and os.path.getsize(capture) > 0:
                p = mrtest.run([memray, "stats", capture])
                c.check(not mrtest.crashed(p) and (p.returncode == 0 or mrtest.one_error_line(p)),
                        "stats of the partial capture works or gives one error line")
        finally:
            subprocess.run(["umount", mnt])
            os.rmdir(mnt)
    c.finish()


if __name__ == "__main__":
    main()
