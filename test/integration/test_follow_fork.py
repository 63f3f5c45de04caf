"""--follow-fork under `memray run`: every forked process writes its own capture, named as memray
names it (<output>.<child pid>; a grandchild of out.bin writes out.bin.<its pid>), holding exactly
that process's allocations after the fork; the parent's capture holds exactly the parent's. The
target (a native program, or a Python script on one interpreter) prints what each capture must
hold once its children ended (see targets/follow_fork_target.c):
  PARENT <pid> / CHILD <pid> <size> <count> / NOT <pid> <size>

usage: test_follow_fork.py MEMRAY MODE TARGET [PYTHON_KEY]
  MODE: basic | storm | thread | exec | dlopen (native) or os_fork | multiprocessing | prefork | thread
        (Python)
"""

import os
import re
import sys

import mrtest
import pythons


def expectations(stdout):
    parent = None
    counts, absent = {}, {}
    for line in stdout.splitlines():
        f = line.split()
        if f[:1] == ["PARENT"] and len(f) == 2:
            parent = int(f[1])
        elif f[:1] == ["CHILD"] and len(f) == 4:
            counts.setdefault(int(f[1]), []).append((int(f[2]), int(f[3])))
        elif f[:1] == ["NOT"] and len(f) == 3:
            absent.setdefault(int(f[1]), []).append(int(f[2]))
    return parent, counts, absent


def check_capture(c, memray, path, pid, counts, absent, allocator):
    p, cap = mrtest.parse_capture(memray, path)
    if not c.check(p.returncode == 0 and cap is not None, "%s parses" % path):
        return
    c.check(cap.trailer is not None, "%s has its trailer (finalized)" % path)
    m = re.search(r"^HEADER .*\bpid=(\d+)", p.stdout, re.M)
    c.check(m is not None and int(m.group(1)) == pid, "%s: header names process %d" % (path, pid))
    for size, count in counts:
        got = sum(1 for e in cap.events if e["kind"] == allocator and e["size"] == size)
        c.equal(got, count, "%s: %s of %d bytes" % (path, allocator, size))
    for size in absent:
        got = sum(1 for e in cap.events if e["size"] == size)
        c.equal(got, 0, "%s: nothing of %d bytes" % (path, size))


def main():
    memray, mode, target = sys.argv[1:4]
    python = None
    if len(sys.argv) > 4:
        python = pythons.find(sys.argv[4])
        if python is None:
            mrtest.skip(pythons.missing_reason(sys.argv[4]))
    c = mrtest.Checker("follow-fork-" + mode)
    work = mrtest.scratch_dir("ff")
    out = os.path.join(work, "ff.bin")
    cmd = [memray, "run", "--follow-fork", "-o", out]
    cmd += ["--python", python, target, mode] if python else ["--", target, mode]
    # A deadlock in a fork handler shows up as this timeout.
    p = mrtest.run(cmd, timeout=240)
    c.equal(p.returncode, 0, "memray run --follow-fork exit code")
    parent, counts, absent = expectations(p.stdout)
    if not c.check(parent is not None and counts, "target announced its processes"):
        c.finish()
    c.check("error" not in p.stderr.lower(), "no payload errors on stderr")

    allocator = "MALLOC"
    children = sorted(set(counts) | set(absent) - {parent})
    expected = {"ff.bin"} | {"ff.bin.%d" % pid for pid in children if pid != parent}
    c.equal(sorted(os.listdir(work)), sorted(expected),
            "one capture per process, named <output>.<pid>")
    for pid in sorted(set(counts) | set(absent)):
        path = out if pid == parent else "%s.%d" % (out, pid)
        if os.path.exists(path):
            check_capture(c, memray, path, pid, counts.get(pid, []), absent.get(pid, []), allocator)

    if mode == "basic":
        # Without the option nothing changes: the children record nothing, write nothing.
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        p = mrtest.run([memray, "run", "-o", out, "--", target, mode], timeout=120)
        c.equal(p.returncode, 0, "memray run without --follow-fork exit code")
        c.equal(sorted(os.listdir(work)), ["ff.bin"], "without --follow-fork: one capture")
        parent2, counts2, absent2 = expectations(p.stdout)
        check_capture(c, memray, out, parent2, counts2.get(parent2, []), absent2.get(parent2, []),
                      allocator)
    if mode == "exec":
        c.check("exec-image" not in "".join(os.listdir(work)), "the exec'd program wrote nothing")
    c.finish()


if __name__ == "__main__":
    main()
