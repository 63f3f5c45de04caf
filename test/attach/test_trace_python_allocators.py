"""`memray attach --trace-python-allocators` on a busy threaded Python HTTP service: 20 attach +
detach cycles while client threads keep it under load and check every answer byte for byte.
After every detach the PyMem/PyObject allocator tables are exactly what they were before the
first attach (read inside the target with PyMem_GetAllocator); the first capture has exactly the
K objects a request made in make_exact while attached (PYMALLOC_MALLOC), and the last one has
PYMALLOC_* events too. Objects allocated before an attach and freed during it pass through to
their allocator (the service keeps answering correctly, and exits cleanly at the end). Last, an
attach while a thread holds the GIL for longer than attach waits: attach fails, and once the
GIL comes free the session that started late stops by itself, allocators restored.

usage: test_trace_python_allocators.py MEMRAY SERVICE_SCRIPT VERSION
"""

import collections
import json
import os
import shutil
import sys
import threading
import time
import urllib.request

import attachtest as at
import mrtest
import pythons  # noqa: E402 (made importable by mrtest)

CYCLES = 20
EXACT = 777
HEADER = 33  # the object allocator's request for bytes of length n is HEADER + n
CLIENTS = 4
HOLD_S = 8  # longer than attach waits for the start of tracking (5 s)


def get(port, path, timeout=30):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode()


class Load:
    """Client threads requesting /work with varying sizes and checking each answer."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.served = 0
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def run(self, seed):
        n = 50 + seed * 37
        while not self.stop.is_set():
            n = (n * 7 + 13) % 2000 + 1
            try:
                body = get(self.port, "/work?n=%d" % n)
                ok = body == ",".join(str(i * i) for i in range(n))
            except Exception as e:  # noqa: BLE001 (any failure of the service counts)
                ok, body = False, repr(e)
            with self.lock:
                if ok:
                    self.served += 1
                else:
                    self.errors.append("n=%d: %s" % (n, body[:200]))

    def count(self):
        with self.lock:
            return self.served

    def wait_progress(self, since, more, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= since + more:
                return True
            time.sleep(0.01)
        return False

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def check_exact(c, memray, capture, script, blob):
    p, cap = mrtest.parse_capture(memray, capture)
    if not c.check(cap is not None, "first capture parses"):
        return
    exact = 0
    for e in cap.events:
        if e["kind"] == "PYMALLOC_MALLOC" and e["size"] == blob:
            stack = [f for f, file, _ in cap.python_stack(e["node"]) if file == script]
            if stack[:1] == ["make_exact"]:
                exact += 1
    c.equal(exact, EXACT, "first capture: PYMALLOC_MALLOC of %d bytes in make_exact" % blob)
    kinds = collections.Counter(e["kind"] for e in cap.events)
    c.check(kinds["PYMALLOC_FREE"] > 0 and kinds["PYMALLOC_REALLOC"] > 0,
            "first capture: PYMALLOC_FREE and PYMALLOC_REALLOC from the load (%r)" % dict(kinds))


def thread_names(pid):
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def check_gil_held(c, memray, t, port, work, before):
    hold = threading.Thread(target=lambda: get(port, "/hold?s=%d" % HOLD_S, timeout=HOLD_S + 30))
    hold.start()
    time.sleep(0.5)  # a head start for the request (not a wait for a condition: any delay works)
    capture = os.path.join(work, "held.bin")
    p = at.attach(memray, t.pid, capture, extra=["--trace-python-allocators"])
    c.check(p.returncode != 0 and "did not happen within" in p.stderr,
            "attach while the GIL is held: fails after attach's timeout")
    c.check("waiting for the GIL" in p.stderr,
            "attach while the GIL is held: the error says the payload waits for the GIL (%r)"
            % p.stderr.strip())
    c.check("memray-control" in thread_names(t.pid),
            "the payload's control thread still waits for the GIL")
    hold.join()
    # The late session starts once the GIL is free, sees the stop request and ends; its control
    # thread exits last.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "memray-control" in thread_names(t.pid):
        time.sleep(0.05)
    c.check("memray-control" not in thread_names(t.pid), "the late session ended by itself")
    c.equal(json.loads(get(port, "/allocators")), before,
            "after the GIL came free: allocators as before")
    p = at.attach(memray, t.pid, capture + ".2", extra=["--trace-python-allocators"])
    c.check(at.check_attached(c, p, "attach after the held GIL"), "attach works again")
    c.equal(get(port, "/make?k=3"), "made 3", "service answers")
    at.check_detached(c, at.detach(memray, t.pid), capture + ".2", "detach after the held GIL")
    c.equal(json.loads(get(port, "/allocators")), before, "allocators as before at the end")


def main():
    memray, script_src, version = sys.argv[1:4]
    python = pythons.require(version)
    at.require_attach(memray)
    c = mrtest.Checker("attach-trace-python-allocators-" + version)
    work = mrtest.scratch_dir("at-tpa" + version)
    script = os.path.join(work, "http_service.py")
    shutil.copy(script_src, script)
    blob = HEADER + at.script_constants(script)["BLOB"]

    t = at.Target([python, script], env={"PYTHONDONTWRITEBYTECODE": "1"})
    line = t.expect(r"^ready \d+")
    if not c.check(line is not None, "service ready"):
        t.kill()
        c.finish()
    port = int(line.split()[1])
    before = json.loads(get(port, "/allocators"))
    load = Load(port)
    c.check(load.wait_progress(0, 20), "service answers under load before any attach")

    captures = []
    for cycle in range(CYCLES):
        capture = os.path.join(work, "cycle%02d.bin" % cycle)
        p = at.attach(memray, t.pid, capture, extra=["--trace-python-allocators"])
        if not at.check_attached(c, p, "cycle %d: attach" % cycle):
            break
        during = json.loads(get(port, "/allocators"))
        c.check(during[1:] != before[1:] and during[0] == before[0],
                "cycle %d: MEM and OBJ allocators replaced while attached, RAW untouched" % cycle)
        if cycle == 0:
            c.equal(get(port, "/make?k=%d" % EXACT), "made %d" % EXACT,
                    "cycle 0: make_exact answered")
        c.check(load.wait_progress(load.count(), 10), "cycle %d: load served while attached" % cycle)
        p = at.detach(memray, t.pid)
        if not at.check_detached(c, p, capture, "cycle %d: detach" % cycle):
            break
        captures.append(capture)
        c.equal(json.loads(get(port, "/allocators")), before,
                "cycle %d: allocators exactly as before the attach" % cycle)
        c.check(load.wait_progress(load.count(), 5), "cycle %d: load served after detach" % cycle)
    load.finish()
    c.equal(load.errors[:5], [], "every answer correct (%d served)" % load.served)
    c.equal(len(captures), CYCLES, "cycles completed")
    if captures:
        check_exact(c, memray, captures[0], script, blob)
        p, cap = mrtest.parse_capture(memray, captures[-1])
        if c.check(cap is not None, "last capture parses"):
            c.check(any(e["kind"] == "PYMALLOC_MALLOC" for e in cap.events),
                    "last capture has PYMALLOC_MALLOC events")
    check_gil_held(c, memray, t, port, work, before)
    c.check(t.running(), "service running at the end")
    c.equal(t.finish(), 0, "service exit code")
    c.finish()


if __name__ == "__main__":
    main()
