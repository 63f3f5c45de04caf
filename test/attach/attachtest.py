"""Helpers shared by the attach/detach test drivers (run by /usr/bin/python3 with PYTHONPATH
holding this directory and test/integration, whose mrtest.py provides run/Checker/Capture).

Targets are long-running processes driven over stdin/stdout: they announce what they do, and
the drivers check captures against that. Leaks are computed here from `memray parse` output
(allocations whose address is not freed later), independently of any report code.
"""

import os
import queue
import re
import subprocess
import threading
import time

import mrtest

HEAP_ALLOCATORS = {"MALLOC", "CALLOC", "REALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN",
                   "VALLOC", "PVALLOC", "PYMALLOC_MALLOC", "PYMALLOC_CALLOC", "PYMALLOC_REALLOC"}
FREES = {"FREE", "PYMALLOC_FREE"}


def require_attach(memray):
    """Skips (77) when this machine forbids ptrace (see mrtest.require_ptrace), or while
    `memray attach`/`detach` are still the placeholders."""
    mrtest.require_ptrace()
    p = subprocess.run([memray, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in p.stdout.decode(errors="replace").splitlines():
        words = line.split()
        if words[:1] in (["attach"], ["detach"]) and "not supported yet" in line:
            mrtest.skip("`memray %s` is not implemented in this build yet" % words[0])


class Target:
    """A process driven line by line: stdout lines are collected by a reader thread."""

    def __init__(self, cmd, env=None, pass_fds=(), cwd=None, stdin=subprocess.PIPE):
        print("$ " + " ".join(str(c) for c in cmd) + "   (target)")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen([str(c) for c in cmd], stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env, pass_fds=pass_fds,
                                     cwd=cwd)
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        self.output = []  # every stdout line, for the log and for final checks
        self.stderr = []
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, True),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, False),
                                          daemon=True)]
        for t in self._readers:
            t.start()

    def _pump(self, stream, is_stdout):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if is_stdout:
                self.output.append(line)
                self.lines.put(line)
            else:
                self.stderr.append(line)
        if is_stdout:
            self.lines.put(None)

    def expect(self, pattern, timeout=30):
        """Next stdout line matching the regex (earlier non-matching lines are skipped but kept
        in self.output); None on timeout or end of output."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                print("  target %d: no line matching %r within %ss" % (self.pid, pattern, timeout))
                return None
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                print("  target %d: output ended while waiting for %r" % (self.pid, pattern))
                self.lines.put(None)
                return None
            if re.search(pattern, line):
                return line

    def send(self, text):
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError):
            return False

    def request(self, text, answer, timeout=30):
        """Sends one command line and waits for its answer line."""
        if not self.send(text + "\n"):
            return None
        return self.expect(answer, timeout)

    def running(self):
        return process_running(self.pid) and self.proc.poll() is None

    def finish(self, quit_command="quit\n", timeout=30):
        """Asks the target to quit, waits; kills it if it does not. Returns the exit code."""
        if self.proc.poll() is None:
            self.send(quit_command)
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print("  target %d did not quit in %ss: killing it" % (self.pid, timeout))
                self.kill()
        for t in self._readers:
            t.join(5)
        if self.stderr:
            print("  target %d stderr:\n    %s" % (self.pid, "\n    ".join(self.stderr[-20:])))
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._readers:
            t.join(5)
        if self.stderr:
            print("  target %d stderr:\n    %s" % (self.pid, "\n    ".join(self.stderr[-20:])))


def proc_status(pid):
    """Fields of /proc/PID/status, or None when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    except OSError:
        return None


def process_running(pid):
    """Alive, not a zombie, not left stopped, and no tracer left attached."""
    st = proc_status(pid)
    if st is None:
        print("  process %d is gone" % pid)
        return False
    state = st.get("State", "").split()
    tracer = st.get("TracerPid", "0").strip()
    ok = bool(state) and state[0] not in ("Z", "X", "T", "t") and tracer == "0"
    if not ok:
        print("  process %d: State=%s TracerPid=%s" % (pid, " ".join(state), tracer))
    return ok


def count(t):
    """The target's progress counter: its answer to "count" ("count N"), None if it gave none."""
    line = t.request("count", r"^count \d+", 10)
    return int(line.split()[1]) if line else None


def wait_progress(t, since, timeout=30):
    """Waits until the target's count passes `since`; the new count (None if it does not)."""
    deadline = time.monotonic() + timeout
    while since is not None and time.monotonic() < deadline:
        now = count(t)
        if now is not None and now > since:
            return now
    return None


def wait_blocked(pid, syscall_nr, count, timeout=10.0):
    """Waits until `count` threads of pid sit in system call `syscall_nr` (from
    /proc/PID/task/TID/syscall, whose first field is the call a blocked thread is in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocked = 0
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return False
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                    first = f.read().split()
            except OSError:
                continue
            if first and first[0] == str(syscall_nr):
                blocked += 1
        if blocked >= count:
            return True
        time.sleep(0.005)
    return False


def wait_untraced(pid, timeout=5.0):
    """A CLI that exited has detached; the kernel may take a moment to show it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = proc_status(pid)
        if st is None or st.get("TracerPid", "0").strip() == "0":
            return
        time.sleep(0.01)


def attach(memray, pid, output, extra=(), cwd=None, timeout=60):
    p = mrtest.run([memray, "attach", "-o", output, *extra, str(pid)], timeout=timeout, cwd=cwd)
    wait_untraced(pid)
    return p


def detach(memray, pid, timeout=60):
    p = mrtest.run([memray, "detach", str(pid)], timeout=timeout)
    wait_untraced(pid)
    return p


def nonempty_lines(text):
    return [l for l in text.splitlines() if l.strip()]


def check_attached(c, p, what):
    """attach succeeded: exit 0 and exactly one line of output."""
    ok = c.equal(p.returncode, 0, what + ": exit code")
    c.equal(len(nonempty_lines(p.stdout + p.stderr)), 1, what + ": one line of output")
    return ok


def check_detached(c, p, capture, what):
    ok = c.equal(p.returncode, 0, what + ": exit code")
    c.check("Wrote" in p.stdout and (os.path.basename(capture) in p.stdout),
            what + ": prints 'Wrote ...%s'" % os.path.basename(capture))
    return ok


def live_at_end(cap):
    """Allocation events whose address was not freed later in the capture (memray's leaks,
    computed here from parse output). mmap'd regions are left out: munmap may be partial."""
    live = {}
    for e in cap.events:
        if e["kind"] in HEAP_ALLOCATORS:
            live[e["address"]] = e
        elif e["kind"] in FREES:
            live.pop(e["address"], None)
    return list(live.values())


def allocations(cap):
    return [e for e in cap.events if e["kind"] in HEAP_ALLOCATORS]


def script_marks(path):
    marks = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            m = re.search(r"# MARK: (\w+)", line)
            if m:
                marks[m.group(1)] = number
    return marks


def script_constants(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^([A-Z_]+) = (\d+)\s*$", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


class Symbols:
    """Function symbols of one ELF file (nm), to name native frames independently of our own
    symbolisation code."""

    def __init__(self, path):
        p = subprocess.run(["nm", "--defined-only", "-S", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        self.entries = []
        for line in p.stdout.decode(errors="replace").splitlines():
            f = line.split()
            if len(f) == 4 and f[2] in ("t", "T", "w", "W"):
                self.entries.append((int(f[0], 16), int(f[1], 16), f[3]))
        self.entries.sort()

    def lookup(self, vaddr):
        for start, size, name in self.entries:
            if start <= vaddr < start + size:
                return name
        return None


def native_functions(cap, node_id, exe, symbols):
    """Native frames innermost first: the function name for frames inside `exe`, else the
    basename of the object ('?' when no object holds the address)."""
    exe = os.path.realpath(exe)
    out = []
    for _, n in cap._chain(node_id):
        if n is None or not n["kind"].lower().startswith("nat"):
            continue
        ip = n["ip"] - 1  # a return address points just past its call
        name = "?"
        for o in cap.objects:
            if any(o["load_bias"] + v <= ip < o["load_bias"] + v + m for v, m in o["segments"]):
                if os.path.realpath(o["path"]) == exe:
                    name = symbols.lookup(ip - o["load_bias"]) or "?"
                else:
                    name = "[%s]" % os.path.basename(o["path"])
                break
        out.append(name)
    return out


def exe_functions(cap, node_id, exe, symbols):
    """Only the frames inside `exe`, innermost first."""
    return [f for f in native_functions(cap, node_id, exe, symbols)
            if not f.startswith("[") and f != "?"]


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
