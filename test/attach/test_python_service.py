"""Attach to a running Python service on one interpreter, have it serve K requests between
attach and detach, and check the capture: the leaks (computed from `memray parse`) name the
leaking functions with file:line and exactly K x size bytes, the temporary buffers are recorded
and freed, the worker thread's leaks are on another thread, and the frames that were running
before attach (serve, main, <module>) are in the stacks. Then attach again: a second capture
with only the later requests.

usage: test_python_service.py MEMRAY SERVICE_SCRIPT VERSION   (3.8 ... 3.13 or "debian")
"""

import collections
import os
import shutil
import sys

import attachtest as at
import mrtest
import pythons  # noqa: E402 (made importable by mrtest)
from test_python_pattern import use_oracle_lines


def check_capture(c, memray, python, script, capture, k, consts, marks, tag):
    leak = consts["LEAK_SIZE"] + 1  # bytearray(n) asks for n + 1 bytes
    wleak = consts["WORKER_LEAK_SIZE"] + 1
    temp = consts["TEMP_SIZE"] + 1
    p, cap = mrtest.parse_capture(memray, capture)
    if not c.equal(p.returncode, 0, "%s: parse exit code" % tag) or cap is None:
        return
    use_oracle_lines(cap, python, script)

    def script_stack(e):
        return [(f, l) for f, file, l in cap.python_stack(e["node"]) if file == script]

    allocs = collections.defaultdict(list)
    for e in at.allocations(cap):
        if e["size"] in (leak, wleak, temp):
            allocs[e["size"]].append(e)
    c.equal(len(allocs[leak]), k, "%s: allocations of %d bytes (leak_memory)" % (tag, leak))
    c.equal(len(allocs[wleak]), k, "%s: allocations of %d bytes (worker_leak)" % (tag, wleak))
    c.equal(len(allocs[temp]), k, "%s: allocations of %d bytes (temporary_work)" % (tag, temp))

    main_stack = [("leak_memory", marks["leak"]), ("handle_request", marks["handle_call"]),
                  ("serve", marks["serve_call"]), ("main", marks["main_call"]),
                  ("<module>", marks["module"])]
    for i, e in enumerate(allocs[leak]):
        c.equal(script_stack(e), main_stack, "%s: stack of leak %d (serve/main ran before "
                "attach)" % (tag, i))
    for i, e in enumerate(allocs[wleak]):
        c.equal(script_stack(e)[:2], [("worker_leak", marks["worker_leak"]),
                                      ("worker_loop", marks["worker_call"])],
                "%s: stack of worker leak %d" % (tag, i))
    for i, e in enumerate(allocs[temp]):
        c.equal(script_stack(e)[:1], [("temporary_work", marks["temp"])],
                "%s: stack of temporary %d" % (tag, i))
    main_threads = {e["thread"] for e in allocs[leak]}
    worker_threads = {e["thread"] for e in allocs[wleak]}
    c.check(len(main_threads) == 1 and len(worker_threads) == 1 and
            main_threads != worker_threads,
            "%s: main and worker leaks on two distinct threads (%r, %r)"
            % (tag, main_threads, worker_threads))

    # Leaks by innermost frame of the script, over every allocation the script made.
    by_location = collections.Counter()
    for e in at.live_at_end(cap):
        stack = script_stack(e)
        if stack and e["size"] in (leak, wleak, temp):
            by_location["%s:%s:%d" % (stack[0][0], script, stack[0][1])] += e["size"]
    c.equal(dict(by_location), {
        "leak_memory:%s:%d" % (script, marks["leak"]): k * leak,
        "worker_leak:%s:%d" % (script, marks["worker_leak"]): k * wleak,
    }, "%s: leaked bytes by location (temporaries all freed)" % tag)

    p, data = mrtest.stats_json(memray, capture, os.path.dirname(capture))
    c.equal(p.returncode, 0, "%s: stats --json exit code" % tag)


def main():
    memray, script_src, version = sys.argv[1:4]
    python = pythons.require(version)
    at.require_attach(memray)
    c = mrtest.Checker("attach-python-" + version)
    work = mrtest.scratch_dir("at-py" + version)
    script = os.path.join(work, "service.py")
    shutil.copy(script_src, script)
    consts = at.script_constants(script)
    marks = at.script_marks(script)

    t = at.Target([python, script], env={"PYTHONDONTWRITEBYTECODE": "1"})
    if not c.check(t.expect(r"^ready ") is not None, "service ready"):
        t.kill()
        c.finish()
    c.check(t.request("req 2", r"^served 2") is not None, "requests before attach")

    k = 5
    capture = os.path.join(work, "service.bin")
    p = at.attach(memray, t.pid, capture)
    if not at.check_attached(c, p, "attach"):
        t.kill()
        c.finish()
    c.check(t.request("req %d" % k, r"^served ") is not None, "requests while attached")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, capture, "detach")
    c.check(t.running(), "service running after detach")
    c.check(t.request("req 1", r"^served 1") is not None, "request after detach")
    if c.check(os.path.exists(capture), "capture written"):
        check_capture(c, memray, python, script, capture, k, consts, marks, "first")

    capture2 = os.path.join(work, "again.bin")
    p = at.attach(memray, t.pid, capture2)
    at.check_attached(c, p, "second attach")
    c.check(t.request("req 3", r"^served ") is not None, "requests during the second attach")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, capture2, "second detach")
    if c.check(os.path.exists(capture2), "second capture written"):
        check_capture(c, memray, python, script, capture2, 3, consts, marks, "second")

    c.check(t.running(), "service running at the end")
    c.equal(t.finish(), 0, "service exit code")
    c.finish()


if __name__ == "__main__":
    main()
