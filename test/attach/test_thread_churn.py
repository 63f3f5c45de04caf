"""CYCLES attach/detach cycles (default 200) on a program that starts and ends short-lived
threads all the time (targets/thread_churn.py, or its C variant): a thread created while we hold
the process, or one that exits while we stop it, is normal life, so every attach and every
detach must succeed, the target must keep running untraced and making progress, and the
captures must be readable. All cycles run even after a failure, so the log shows the failure
rate and each distinct error.

usage: test_thread_churn.py MEMRAY TARGET [CYCLES]
TARGET is an executable, or a .py file run with this interpreter.
"""

import os
import subprocess
import sys
import time

import attachtest as at
import mrtest

COMMAND_TIMEOUT = 30  # a hung attach or detach shows up as a failed cycle, not a hung test
READ_EVERY = 25       # every Nth capture is read back in full (stats); the others are checked


def run(cmd):
    """The command's CompletedProcess (text output), or None if it did not finish in time."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


def describe(p):
    if p is None:
        return "no answer within %d s" % COMMAND_TIMEOUT
    text = (p.stderr.strip() or p.stdout.strip()).splitlines()
    return "exit %d: %s" % (p.returncode, " | ".join(text[-3:]))


def main():
    memray, target = sys.argv[1:3]
    cycles = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    at.require_attach(memray)
    name = os.path.splitext(os.path.basename(target))[0]
    c = mrtest.Checker("attach-thread-churn (%s)" % name)
    work = mrtest.scratch_dir("at-churn")
    cmd = [sys.executable, target] if target.endswith(".py") else [target]
    t = at.Target(cmd)
    if not c.check(t.expect(r"^ready") is not None, "target ready"):
        t.kill()
        c.finish()
    last = at.wait_progress(t, at.count(t))
    c.check(last is not None, "the target's threads come and go")

    failures = []  # (cycle, what, message)
    readable = 0
    started = time.monotonic()
    for i in range(cycles):
        capture = os.path.join(work, "c%03d.bin" % i)
        p = run([memray, "attach", "-o", capture, str(t.pid)])
        at.wait_untraced(t.pid)
        if p is None or p.returncode != 0:
            failures.append((i, "attach", describe(p)))
            if not t.running():
                break
            continue
        now = at.wait_progress(t, at.count(t))  # threads came and went while tracked
        if now is None:
            failures.append((i, "progress while attached", "the worker count stopped"))
        p = run([memray, "detach", str(t.pid)])
        at.wait_untraced(t.pid)
        if p is None or p.returncode != 0 or "Wrote" not in p.stdout:
            failures.append((i, "detach", describe(p)))
            if not t.running():
                break
            continue
        if not t.running():
            failures.append((i, "target state", "not running untraced after detach"))
            break
        if not os.path.exists(capture) or os.path.getsize(capture) == 0:
            failures.append((i, "capture", "missing or empty"))
        elif i % READ_EVERY == 0:
            p, data = mrtest.stats_json(memray, capture, work)
            if p.returncode == 0 and data is not None and data.get("total_num_allocations", 0) > 0:
                readable += 1
            else:
                failures.append((i, "capture", "not readable or no allocations"))
        if os.path.exists(capture):
            os.unlink(capture)
    elapsed = time.monotonic() - started
    print("%d cycles in %.1f s (%.2f s per cycle); %d failed" %
          (cycles, elapsed, elapsed / max(cycles, 1), len(failures)))
    for i, what, message in failures:
        print("  cycle %d: %s: %s" % (i, what, message))
    c.equal(len(failures), 0, "failed cycles out of %d" % cycles)
    c.check(readable > 0, "captures read back (%d)" % readable)
    after = at.count(t)
    c.check(after is not None and last is not None and after > last,
            "the target still makes progress at the end (%r -> %r)" % (last, after))
    code = t.finish()
    c.equal(code, 0, "target exit code")
    c.finish()


if __name__ == "__main__":
    main()
