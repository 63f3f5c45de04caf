"""Python known pattern: `memray run` a script on one interpreter, then check `summary`,
`stats --json` and `parse` against what the script does (counts, bytes, stack with lines).

usage: test_python_pattern.py MEMRAY SCRIPT VERSION   (VERSION: 3.8 ... 3.13 or "debian")
"""

import ast
import os
import re
import shutil
import sys

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)


# Runs inside the *target* interpreter: maps (function, first line, byte offset) of the script's
# code objects to source lines with the interpreter's own line tables, so the expected lines do
# not depend on our decoder (src/report/python_lines.cpp).
_LINE_ORACLE = r"""
import dis, json, sys, types
path, queries = sys.argv[1], json.loads(sys.argv[2])
top = compile(open(path).read(), path, "exec")
codes = []
def walk(c):
    codes.append(c)
    for k in c.co_consts:
        if isinstance(k, types.CodeType):
            walk(k)
walk(top)
def line_at(c, off):
    if hasattr(c, "co_lines"):
        for start, end, line in c.co_lines():
            if start <= off < end:
                return line
        return None
    best = None
    for start, line in dis.findlinestarts(c):
        if start <= off:
            best = line
    return best
out = []
for name, first, off in queries:
    match = [c for c in codes if c.co_name == name and c.co_firstlineno == first]
    out.append(line_at(match[0], off) if match else None)
print(json.dumps(out))
"""


def oracle_lines(python, script, queries):
    if not queries:
        return {}
    import json
    p = mrtest.run([python, "-c", _LINE_ORACLE, script, json.dumps(queries)])
    if p.returncode != 0:
        return {}
    return dict(zip(map(tuple, queries), json.loads(p.stdout)))


def use_oracle_lines(cap, python, script):
    """Makes cap.line_of answer, for the frames of `script`, what the interpreter itself says."""
    queries = []
    for n in cap.nodes.values():
        code = cap.codes.get(n["code"])
        if n["kind"] == "python" and code and code["file"] == script:
            queries.append([code["function"], code["first_line"], n["offset"]])
    lines = oracle_lines(python, script, queries)
    cap.line_of = lambda code, off: lines.get((code["function"], code["first_line"], off))


def script_facts(path):
    """Constants and marked line numbers, read from the script itself."""
    text = open(path).read()
    consts = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = eval(compile(ast.Expression(node.value), path, "eval"),
                                                  {"__builtins__": {}})
            except Exception:
                pass
    marks = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = re.search(r"# MARK: (\w+)", line)
        if m:
            marks[m.group(1)] = number
    # Counts are the literal range() bounds on the lines that allocate / free.
    lines = text.splitlines()
    allocated = int(re.search(r"range\((\d+)\)", lines[marks["alloc"] - 2]).group(1))
    free_line = next(i for i, l in enumerate(lines) if "buffers.pop()" in l)
    freed = int(re.search(r"range\((\d+)\)", lines[free_line - 1]).group(1))
    return consts["BUFFER_SIZE"], allocated, freed, marks


def main():
    memray, script_src, version = sys.argv[1:4]
    python = pythons.require(version)

    buffer_size, n_alloc, n_freed, marks = script_facts(script_src)
    # bytearray(n) requests n + 1 bytes (room for the trailing NUL) from the object allocator;
    # above pymalloc's 512-byte limit that goes straight to malloc.
    request = buffer_size + 1
    n_kept = n_alloc - n_freed

    work = mrtest.scratch_dir("py" + version)
    script = os.path.join(work, "pattern.py")
    shutil.copy(script_src, script)
    capture = os.path.join(work, "pattern.bin")
    c = mrtest.Checker("python-pattern-" + version)

    p = mrtest.memray_run(memray, capture, [script], python=python)
    c.equal(p.returncode, 0, "memray run exit code")
    c.check("kept %d buffers of %d bytes" % (n_kept, buffer_size) in p.stdout,
            "script output passed through")
    if not c.check(os.path.exists(capture), "capture file written"):
        c.finish()

    expected_stack = [("keep_buffers", script, marks["alloc"]),
                      ("make_report", script, marks["call"]),
                      ("<module>", script, marks["module"])]

    # --- parse: every event, exact.
    p, cap = mrtest.parse_capture(memray, capture)
    c.equal(p.returncode, 0, "parse exit code")
    if cap is not None:
        use_oracle_lines(cap, python, script)
        big = [e for e in cap.events if e["size"] == request and e["kind"] not in ("FREE",)]
        c.equal(len(big), n_alloc, "parse: allocations of %d bytes" % request)
        c.equal(sorted({e["kind"] for e in big}), ["MALLOC"], "parse: allocator of the buffers")
        for i, e in enumerate(big):
            stack = cap.python_stack(e["node"])
            c.equal(stack[:3], expected_stack, "parse: python stack of buffer %d" % i)
            # The walk stops at the launcher's frame that runs the program: nothing outside
            # <module> is recorded.
            c.equal(stack[3:], [], "parse: no frames outside <module> for buffer %d" % i)
        addresses = [e["address"] for e in big]
        freed = [e for e in cap.events if e["kind"] == "FREE" and e["address"] in addresses]
        c.equal(len(freed), n_freed, "parse: frees of buffer addresses")
        # The last n_freed buffers are popped, i.e. freed in reverse allocation order.
        c.equal([e["address"] for e in freed], addresses[::-1][:n_freed],
                "parse: the popped buffers are the ones freed, last first")
        # The launcher's own work after tracking started (it imported threading there once:
        # ~340 allocations of the import system in every capture) is not the program's.
        own = [e for e in cap.events if e["kind"] != "FREE" and e.get("node") and
               not any(f[1] == script for f in cap.python_stack(e["node"]))]
        c.check(len(own) <= 5, "parse: at most a few allocations outside the script (%d: %r)"
                % (len(own), [cap.python_stack(e["node"])[:3] for e in own[:3]]))
        threads = {e["thread"] for e in big}
        c.equal(len(threads), 1, "parse: buffers allocated on one thread")
        if threads:
            name = cap.thread_name(threads.pop())
            c.check(name in ("MainThread", "python", "python3") or name.startswith("python"),
                    "parse: main thread name (got %r)" % name)

    # --- stats --json: totals over the whole run, top locations by (function, file, line).
    p, data = mrtest.stats_json(memray, capture, work, extra=("-n", "1000"))
    c.equal(p.returncode, 0, "stats --json exit code")
    if data is not None:
        location = "keep_buffers:%s:%d" % (script, marks["alloc"])
        by_size = {d["location"]: d["size"] for d in data.get("top_allocations_by_size", [])}
        by_count = {d["location"]: d["count"] for d in data.get("top_allocations_by_count", [])}
        c.equal(by_size.get(location), n_alloc * request, "stats: bytes at " + location)
        c.equal(by_count.get(location), n_alloc, "stats: count at " + location)
        top = data.get("top_allocations_by_size", [{}])[0].get("location")
        c.equal(top, location, "stats: largest location by size")
        dist = data.get("allocator_type_distribution", {})
        c.check(dist.get("MALLOC", 0) >= n_alloc, "stats: MALLOC count %r >= %d"
                % (dist.get("MALLOC"), n_alloc))
        c.check(data.get("total_num_allocations", 0) >= n_alloc,
                "stats: total_num_allocations %r >= %d" % (data.get("total_num_allocations"), n_alloc))
        c.check(data.get("total_bytes_allocated", 0) >= n_alloc * request,
                "stats: total_bytes_allocated %r >= %d"
                % (data.get("total_bytes_allocated"), n_alloc * request))
        if cap is not None:
            allocs = [e for e in cap.events if e["kind"] not in ("FREE", "MUNMAP", "PYMALLOC_FREE")]
            c.equal(data.get("total_num_allocations"), len(allocs),
                    "stats total_num_allocations == allocation events in parse")
            c.equal(data.get("total_bytes_allocated"), sum(e["size"] for e in allocs),
                    "stats total_bytes_allocated == sum of sizes in parse")

    # --- summary: allocations alive at the high-water mark, per (function, file).
    # The peak is right after the 7th buffer: all n_alloc buffers are alive then.
    p = mrtest.run([memray, "summary", capture])
    c.equal(p.returncode, 0, "summary exit code")
    rows = {}
    for line in p.stdout.splitlines():
        for func in ("keep_buffers", "make_report"):
            if re.search(r"\b%s at %s\b" % (re.escape(func), re.escape(script)), line):
                rows[func] = re.findall(r"\d+\.\d{3}[kMGTP]?B|\d+\.\d{2}%|(?<![\w.])\d+(?![\w.%])",
                                        line.split(script, 1)[1])
    peak = mrtest.size_fmt(n_alloc * request)
    zero = mrtest.size_fmt(0)
    kb = rows.get("keep_buffers")
    if c.check(kb is not None and len(kb) >= 5, "summary: keep_buffers row %r" % (kb,)):
        c.equal([kb[0], kb[2], kb[4]], [peak, peak, str(n_alloc)],
                "summary: keep_buffers total, own, count")
    mr = rows.get("make_report")
    if c.check(mr is not None and len(mr) >= 5, "summary: make_report row %r" % (mr,)):
        c.equal([mr[0], mr[2], mr[4]], [peak, zero, str(n_alloc)],
                "summary: make_report total, own, count")
    c.finish()


if __name__ == "__main__":
    main()
