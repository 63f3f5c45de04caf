"""Shared helpers of the integration test drivers (run by Debian's /usr/bin/python3).

Each driver gets the memray executable (and other built artefacts) as arguments from meson, runs
real processes, and checks what was recorded against what the target really did. Exit codes follow
meson: 0 pass, 1 fail, 77 skip (with a reason on stdout).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

# test/pythons.py (the one list of interpreters) sits one level up; every driver imports mrtest.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SKIP = 77


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


def require_ptrace():
    """Skips (77) unless a process may PTRACE_SEIZE a sibling, as `memray attach` must: Yama's
    ptrace_scope, a missing CAP_SYS_PTRACE or a seccomp filter can forbid it."""
    probe = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17
pid = int(sys.argv[1])
if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
    print(os.strerror(ctypes.get_errno()))
    sys.exit(1)
libc.ptrace(PTRACE_DETACH, pid, None, None)
"""
    target = subprocess.Popen(["sleep", "60"])
    try:
        p = subprocess.run([sys.executable, "-c", probe, str(target.pid)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    finally:
        target.kill()
        target.wait()
    if p.returncode != 0:
        scope = ""
        try:
            with open("/proc/sys/kernel/yama/ptrace_scope") as f:
                scope = " (yama ptrace_scope=%s)" % f.read().strip()
        except OSError:
            pass
        skip("this machine does not let a process ptrace its sibling%s: %s"
             % (scope, p.stdout.decode(errors="replace").strip()))


class Checker:
    """Collects failures so one run reports every broken expectation, not just the first."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.passes = 0

    def check(self, ok, what):
        if ok:
            self.passes += 1
            print("ok   " + what)
        else:
            self.failures.append(what)
            print("FAIL " + what)
        return ok

    def equal(self, actual, expected, what):
        return self.check(actual == expected, "%s: expected %r, got %r" % (what, expected, actual))

    def finish(self):
        if self.failures:
            print("%s: %d check(s) failed, %d passed" % (self.name, len(self.failures), self.passes))
            sys.exit(1)
        print("%s: all %d checks passed" % (self.name, self.passes))
        for path in _scratch:
            shutil.rmtree(path, ignore_errors=True)
        sys.exit(0)


_scratch = []


def scratch_dir(tag):
    # Short paths keep summary rows on one line. Removed when the test passes, kept for
    # inspection when it fails.
    path = tempfile.mkdtemp(prefix="mr-%s-" % tag)
    _scratch.append(path)
    return path


def run(cmd, timeout=120, env=None, check_crash=True, **kw):
    """Runs a command, returns CompletedProcess with text stdout/stderr, echoes it for the log."""
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    full_env = dict(os.environ)
    full_env.setdefault("COLUMNS", "250")
    if env:
        full_env.update(env)
    try:
        p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=full_env, **kw)
    except subprocess.TimeoutExpired as e:
        print("  timed out after %ss" % timeout)
        raise
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    print("  exit %d" % p.returncode)
    for name, text in (("stdout", p.stdout), ("stderr", p.stderr)):
        if text:
            lines = text.splitlines()
            shown = lines if len(lines) <= 40 else lines[:20] + ["..."] + lines[-15:]
            print("  %s:\n    %s" % (name, "\n    ".join(shown)))
    return p


def crashed(p):
    """A signal death (negative code from subprocess) or a shell-style 128+N code."""
    return p.returncode < 0 or p.returncode >= 128


def one_error_line(p):
    """True when stderr is exactly one line 'memray: error: ...'."""
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    return len(lines) == 1 and lines[0].startswith("memray: error: ")


def parse_expectations(stdout):
    """Lines 'EXPECT <thread> <KIND> <size> <count>' and 'ABSENT <size>' printed by targets."""
    expect, absent = [], []
    for line in stdout.splitlines():
        f = line.split()
        if f[:1] == ["EXPECT"] and len(f) == 5:
            expect.append((f[1], f[2], int(f[3]), int(f[4])))
        elif f[:1] == ["ABSENT"] and len(f) == 2:
            absent.append(int(f[1]))
    return expect, absent


def stats_json(memray, capture, workdir, extra=()):
    out = os.path.join(workdir, "stats-%d.json" % len(os.listdir(workdir)))
    p = run([memray, "stats", "--json", "-o", out, "-f", *extra, capture])
    data = None
    if p.returncode == 0 and os.path.exists(out):
        with open(out) as f:
            data = json.load(f)
    return p, data


# ---------------------------------------------------------------------------------------------
# `memray parse` output.
#
# parse prints one record per line: a record name first, then key=value fields (strings quoted
# JSON-style when they contain spaces or quotes). The reader below relies only on that shape and
# on these record names/fields:
#   THREAD     thread=<n> tid=<n> name=<s>
#   CODE       id=<n> function=<s> file=<s> ...
#   NODE       id=<n> parent=<n> kind=python|native code=<n> offset=<n>   (python)
#                                                  ip=<hex>               (native)
#   THREAD_SWITCH / SWITCH thread=<n>     (sets the thread of the events that follow)
#   ALLOCATION / DEALLOCATION thread=<n> address=<hex> [size=<n>] allocator=<KIND> [node=<n>]
#   TRAILER ...
# ---------------------------------------------------------------------------------------------

_ALLOCATORS = {"MALLOC", "FREE", "CALLOC", "REALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC",
               "MEMALIGN", "VALLOC", "PVALLOC", "MMAP", "MUNMAP", "PYMALLOC_MALLOC",
               "PYMALLOC_CALLOC", "PYMALLOC_REALLOC", "PYMALLOC_FREE"}
_FIELD = re.compile(r'([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def _fields(rest):
    out = {}
    for key, value in _FIELD.findall(rest):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        out[key.lower()] = value
    return out


def _int(v, default=0):
    if v is None or v == "":
        return default
    try:
        return int(v, 0)
    except ValueError:
        return default


class Capture:
    """Everything `memray parse` printed, with event stacks resolved through the node table."""

    def __init__(self, text):
        self.threads = {}  # id -> {"tid":, "name":}
        self.codes = {}    # id -> {"function":, "file":}
        self.nodes = {}    # id -> dict(parent, kind, code, line, ip)
        self.events = []   # dict(kind, address, size, node, thread)
        self.objects = []  # dict(path, load_bias, segments[(vaddr, memsz)]), every generation
        self.trailer = None
        self.unknown_lines = 0
        # parse prints python frames as (code, instruction offset); a test that wants lines sets
        # line_of(code_info, offset) -> line, computed independently of our report code.
        self.line_of = None
        thread = 0
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, rest = line.partition(" ")
            name = name.rstrip(":").upper()
            f = _fields(rest)
            if name in ("THREAD", "THREAD_INFO", "THREADINFO"):
                self.threads[_int(f.get("id", f.get("thread", f.get("index"))))] = {
                    "tid": _int(f.get("tid")), "name": f.get("name", "")}
            elif name in ("SWITCH", "THREAD_SWITCH", "THREADSWITCH"):
                thread = _int(f.get("thread", f.get("id")))
            elif name == "CODE":
                self.codes[_int(f.get("id"))] = {"function": f.get("function", ""),
                                                 "file": f.get("file", ""),
                                                 "first_line": _int(f.get("first_line"))}
            elif name == "NODE":
                self.nodes[_int(f.get("id"))] = {
                    "parent": _int(f.get("parent")), "kind": f.get("kind", "python"),
                    "code": _int(f.get("code")), "line": _int(f.get("line"), None),
                    "offset": _int(f.get("offset")), "ip": _int(f.get("ip"))}
            elif name in _ALLOCATORS or name in ("EVENT", "ALLOCATION", "DEALLOCATION"):
                kind = name if name in _ALLOCATORS else f.get("allocator", "").upper()
                self.events.append({
                    "kind": kind, "address": _int(f.get("address", f.get("addr"))),
                    "size": _int(f.get("size")), "node": _int(f.get("node")),
                    "thread": _int(f.get("thread"), thread)})
            elif name == "OBJECT":
                segs = []
                for seg in f.get("segments", "").strip("[]").split(","):
                    if "+" in seg:
                        vaddr, memsz = seg.split("+", 1)
                        segs.append((_int(vaddr), _int(memsz)))
                self.objects.append({"path": f.get("path", ""), "load_bias": _int(f.get("load_bias")),
                                     "segments": segs})
            elif name == "TRAILER":
                self.trailer = f
            else:
                self.unknown_lines += 1

    def thread_name(self, thread_id):
        return self.threads.get(thread_id, {}).get("name", "")

    def _chain(self, node_id):
        """(node_id, node) from node_id to the root; node is None for an id the file lacks,
        which ends the chain. A cycle ends it too."""
        seen = set()
        while node_id and node_id not in seen:
            seen.add(node_id)
            n = self.nodes.get(node_id)
            yield node_id, n
            if n is None:
                return
            node_id = n["parent"]

    def python_stack(self, node_id):
        """[(function, file, line)] innermost first, python frames only."""
        frames = []
        for nid, n in self._chain(node_id):
            if n is None:
                frames.append(("<unknown node %d>" % nid, "", 0))
            elif n["kind"].lower().startswith("py"):
                c = self.codes.get(n["code"], {"function": "<unknown code %d>" % n["code"],
                                                "file": "", "first_line": 0})
                line = n["line"]
                if line is None and self.line_of is not None:
                    line = self.line_of(c, n["offset"])
                frames.append((c["function"], c["file"], line))
        return frames

    def native_frames(self, node_id):
        """(object path, address - load bias) of each native frame of the stack, innermost
        first; (None, address) where no object of the file maps it."""
        out = []
        for _, n in self._chain(node_id):
            if n is not None and n["kind"].lower().startswith("nat"):
                ip = n["ip"] - 1  # a return address points just past its call
                frame = (None, n["ip"])
                for o in self.objects:
                    if any(o["load_bias"] + v <= ip < o["load_bias"] + v + m
                           for v, m in o["segments"]):
                        frame = (o["path"], n["ip"] - o["load_bias"])
                        break
                out.append(frame)
        return out

    def native_objects(self, node_id):
        """Paths of the objects holding each native frame of the stack, innermost first."""
        return [path for path, _ in self.native_frames(node_id)]

    def native_depth(self, node_id):
        return sum(1 for _, n in self._chain(node_id)
                   if n is not None and n["kind"].lower().startswith("nat"))


def parse_capture(memray, capture, timeout=300):
    p = run([memray, "parse", capture], timeout=timeout)
    return p, (Capture(p.stdout) if p.returncode == 0 else None)


def memray_run(memray, output, target, python=None, native=False, extra=(), env=None,
               timeout=300):
    """`memray run -o OUTPUT [--python P] [--native] [extra] -- target...` (native program) or
    `memray run -o OUTPUT ... script.py args` when python is given."""
    cmd = [memray, "run", "-o", output, *extra]
    if native:
        cmd.append("--native")
    if python:
        cmd += ["--python", python, *target]
    else:
        cmd += ["--", *target]
    return run(cmd, timeout=timeout, env=env)


def size_fmt(n):
    """memray's size format: 1000-based units, 3 decimals (e.g. 2.047kB, 3.341MB)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return "%.3f%s" % (n, unit)
        n /= 1000.0


def find_target_pid(memray_pid, program):
    """`memray run` may exec the target or run it as a child: find the process running it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        candidates = [memray_pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    if ppid == memray_pid:
                        candidates.append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        for pid in candidates:
            try:
                if os.path.realpath("/proc/%d/exe" % pid) == os.path.realpath(program):
                    return pid
            except OSError:
                pass
        time.sleep(0.02)
    return None
