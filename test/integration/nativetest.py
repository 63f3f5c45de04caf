"""Helpers of the --native symbolisation tests (native-inline, native-moved, native-hybrid-*,
attach-native-hybrid-*): stacks read from `memray transform csv` (innermost first, exactly as
the reports resolve them), lines found by markers in the sources, ELF facts from binutils.
"""

import csv
import os
import re
import shutil
import subprocess

import mrtest


def marker_lines(path, pattern=r"/\* ([A-Z_]+) \*/"):
    """{MARKER: line number} for comments like /* ALLOC_SITE */ (C) or # MARK: name (Python)."""
    marks = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            for m in re.finditer(pattern, line):
                if m.group(1) in marks:
                    raise SystemExit("marker %s twice in %s" % (m.group(1), path))
                marks[m.group(1)] = number
    return marks


class Row:
    def __init__(self, allocator, count, size, thread, frames):
        self.allocator = allocator
        self.count = count
        self.size = size
        self.thread = thread
        self.frames = frames  # [(function, file, line)], innermost first

    def __repr__(self):
        return "Row(%s, %d, %d, %r)" % (self.allocator, self.count, self.size, self.frames[:8])


def parse_frames(stack):
    """'function;file;line|...' -> [(function, file, line)]. A function name may hold ';' or
    '|' (C++ operators); the file holds neither and the line is digits, so each frame is the
    shortest text that ends in ';file;digits' before a '|' or the end."""
    return [(m.group(1), m.group(2), int(m.group(3)))
            for m in re.finditer(r"(.*?);([^;|]*);(\d+)(?:\||$)", stack or "", re.S)]


def csv_rows(memray, capture, workdir, extra=(), leaks=True):
    """Runs `memray transform csv` and returns (process, [Row])."""
    out = os.path.join(workdir, "t-%d.csv" % len(os.listdir(workdir)))
    cmd = [memray, "transform", "csv", "-f", "-o", out]
    if leaks:
        cmd.append("--leaks")
    p = mrtest.run([*cmd, *extra, capture])
    rows = None
    if p.returncode == 0 and os.path.exists(out):
        rows = []
        with open(out, newline="") as f:
            for r in csv.DictReader(f):
                rows.append(Row(r["allocator"], int(r["num_allocations"]), int(r["size"]),
                                r["tid"], parse_frames(r["stack_trace"])))
    return p, rows


def rows_of_size(rows, size):
    """Rows made only of allocations of `size` bytes (count x size == bytes)."""
    return [r for r in rows if r.count > 0 and r.size == r.count * size]


def same_file(actual, expected):
    """A frame's source file is `expected`: the same file when absolute, else a path that ends
    in expected's last components (DWARF may keep the compiler's relative name)."""
    if not actual:
        return False
    if os.path.isabs(actual):
        return os.path.realpath(actual) == os.path.realpath(expected)
    norm = os.path.normpath(actual)
    while norm.startswith("../"):
        norm = norm[3:]
    return os.path.realpath(expected).endswith("/" + norm)


def frame_matches(frame, function, file, line):
    return frame[0] == function and same_file(frame[1], file) and frame[2] == line


def show(frames, n=12):
    return " <- ".join("%s (%s:%d)" % (f, os.path.basename(p), l) for f, p, l in frames[:n])


def defined_functions(path):
    """Names of the function symbols defined in an ELF file (nm, symtab and dynamic)."""
    names = set()
    for extra in ([], ["-D"]):
        p = subprocess.run(["nm", "--defined-only", *extra, path], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        for line in p.stdout.decode(errors="replace").splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "tTwWiI":
                names.add(f[2])
    return names


def build_id(path):
    """The GNU build-id of an ELF file as hex (readelf -n), None when it has none."""
    p = subprocess.run(["readelf", "-n", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    m = re.search(r"Build ID:\s*([0-9a-fA-F]+)", p.stdout.decode(errors="replace"))
    return m.group(1).lower() if m else None


def require_tools(*tools):
    for t in tools:
        if shutil.which(t) is None:
            mrtest.skip("%s is not installed" % t)


def warning_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("memray: warning: ")]


def fallback_name(function, module):
    """True for the `module+0xoffset` name of an unsymbolised frame of `module` (a basename)."""
    return re.fullmatch(re.escape(module) + r"\+0x[0-9a-f]+", function) is not None
