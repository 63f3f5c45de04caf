"""A write error while tracking (a full 256 KiB tmpfs as output directory) is reported by
`memray detach` and `memray attach --duration` with the payload's own words, the time and what
the capture holds, and they exit 1; the error is reported once (a second detach finds nothing
attached), and the target keeps running.

usage: test_write_error.py MEMRAY
"""

import os
import re
import subprocess
import sys
import time

import attachtest as at
import mrtest
import pythons

k_stopped = (r"^memray: error: tracking stopped at \d\d:\d\d:\d\d: cannot write (\S+): "
             r"No space left on device; the capture holds what was written before$")

# Allocates without end and answers "ping" on stdin, so the capture grows until the disk is full.
k_target = r"""
import sys, threading
def churn():
    while True:
        [str(i) * 3 for i in range(2000)]
threading.Thread(target=churn, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    print("pong", flush=True)
"""


def wait_for_stderr(t, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in t.stderr):
            return True
        if not t.running():
            return False
        time.sleep(0.02)
    return False


def main():
    memray = sys.argv[1]
    at.require_attach(memray)
    python = pythons.find("debian")
    if python is None:
        mrtest.skip(pythons.missing_reason("debian"))
    mnt = mrtest.scratch_dir("wrerr")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if m.returncode != 0:
        mrtest.skip("cannot mount a 256k tmpfs here (%s)" % m.stdout.decode(errors="replace").strip())
    c = mrtest.Checker("attach-write-error")
    t = at.Target([python, "-c", k_target])
    try:
        if not c.check(t.expect(r"^ready") is not None, "target ready"):
            return
        # --- detach after tracking stopped on its own.
        out = os.path.join(mnt, "full.bin")
        p = at.attach(memray, t.pid, out, extra=("--no-compress",))
        c.equal(p.returncode, 0, "attach to a target writing into a small tmpfs")
        c.check(wait_for_stderr(t, "cannot write"), "the payload hit the full disk")
        p = at.detach(memray, t.pid)
        c.equal(p.returncode, 1, "detach after a write error exits 1")
        c.check(mrtest.one_error_line(p), "detach: one line 'memray: error: ...'")
        match = re.search(k_stopped, p.stderr.strip())
        c.check(match is not None, "detach says when and why tracking stopped (%r)" % p.stderr.strip())
        c.check(match is not None and match.group(1) == out, "detach names the capture file")
        c.check("Wrote" not in p.stdout, "detach does not claim to have written the capture")
        p = at.detach(memray, t.pid)
        c.check(p.returncode == 1 and "no previous memray attach call detected" in p.stderr,
                "a second detach: the error was reported already, nothing is attached")
        c.check(t.running() and t.request("ping", r"^pong", 10) is not None,
                "target still running after detach")

        # --- attach --duration: reports the error when it happens and exits 1.
        os.unlink(out)
        t.stderr.clear()
        out2 = os.path.join(mnt, "duration.bin")
        began = time.monotonic()
        p = at.attach(memray, t.pid, out2, extra=("--no-compress", "--duration", "120"), timeout=150)
        took = time.monotonic() - began
        c.equal(p.returncode, 1, "attach --duration with a write error exits 1")
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        c.check(len(lines) == 1 and re.search(k_stopped, lines[0]) is not None,
                "attach --duration gives the payload's error (%r)" % lines)
        c.check(took < 110, "attach --duration returned when tracking stopped, not after 120 s "
                "(%.1f s)" % took)
        p = at.detach(memray, t.pid)
        c.check(p.returncode == 1 and "no previous memray attach call detected" in p.stderr,
                "detach after attach --duration reported the error: nothing is attached")
        c.check(t.running() and t.request("ping", r"^pong", 10) is not None,
                "target still running at the end")
    finally:
        t.finish()
        subprocess.run(["umount", mnt])
    c.finish()


if __name__ == "__main__":
    main()
