"""`memray run --trace-python-allocators` on one interpreter: exact counts of the objects the
target makes through PyObject_Malloc and PyObject_Calloc (PYMALLOC_MALLOC / PYMALLOC_CALLOC at
the target's lines), the ones it frees (PYMALLOC_FREE), list growth (PYMALLOC_REALLOC), each
recorded once; with PYTHONMALLOC=malloc the same, and no MALLOC for those objects, while a
malloc pointer taken with dlsym (ctypes.CDLL(None).malloc) is recorded as MALLOC. Without the
option, no PYMALLOC_* event. The header flag reaches `stats --json`; the reports name the
PYMALLOC_* allocators.

usage: test_trace_python_allocators.py MEMRAY TARGET_SCRIPT KEY   (KEY: see test/pythons.py)
"""

import collections
import os
import shutil
import sys

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)

COUNT = 1000
DROP = 300
HEADER = 33  # sizeof(PyBytesObject) with the NUL: the object allocator's request is HEADER + n


def marks(path):
    out = {}
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if "# MARK: " in line:
                out[line.split("# MARK: ")[1].strip()] = i
    return out


def constants(path):
    out = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition("=")
            if name.strip().isupper() and rest.split("#")[0].strip().isdigit():
                out[name.strip()] = int(rest.split("#")[0])
    return out


def innermost(cap, e, script):
    for func, file, _ in cap.python_stack(e["node"]):
        if file == script:
            return func
    return None


def check_capture(c, memray, cap, script, k, traced, pythonmalloc, tag):
    blob = HEADER + k["BLOB"]
    zeroed = HEADER + k["ZEROED"]
    by = collections.Counter()
    blob_addresses = []
    for e in cap.events:
        where = innermost(cap, e, script)
        by[(e["kind"], e["size"], where)] += 1
        if (e["kind"], e["size"], where) == ("PYMALLOC_MALLOC", blob, "make_blobs"):
            blob_addresses.append(e["address"])
    kinds = collections.Counter(e["kind"] for e in cap.events)
    if not traced:
        c.equal(sum(n for kind, n in kinds.items() if kind.startswith("PYMALLOC")), 0,
                "%s: no PYMALLOC_* event without the option" % tag)
    else:
        c.equal(by[("PYMALLOC_MALLOC", blob, "make_blobs")], COUNT,
                "%s: PYMALLOC_MALLOC of %d bytes in make_blobs" % (tag, blob))
        c.equal(by[("PYMALLOC_CALLOC", zeroed, "make_zeroed")], COUNT,
                "%s: PYMALLOC_CALLOC of %d bytes in make_zeroed" % (tag, zeroed))
        c.check(kinds["PYMALLOC_REALLOC"] > 0 and
                sum(n for (kind, _, where), n in by.items()
                    if kind == "PYMALLOC_REALLOC" and where == "make_blobs") > 0,
                "%s: the list's growth in make_blobs recorded as PYMALLOC_REALLOC" % tag)
        # Each blob once: no MALLOC/CALLOC for the same objects (the inner call is the allocator's).
        for kind in ("MALLOC", "CALLOC"):
            c.equal(by[(kind, blob, "make_blobs")] + by[(kind, zeroed, "make_zeroed")], 0,
                    "%s: no %s for the objects made through the object allocator" % (tag, kind))
        # Frees: exactly the dropped blobs are freed before the end.
        freed = {e["address"] for e in cap.events if e["kind"] == "PYMALLOC_FREE"}
        live = collections.Counter()
        alive = {}
        for e in cap.events:
            if e["kind"].startswith("PYMALLOC") and e["kind"] != "PYMALLOC_FREE":
                alive[e["address"]] = e
            elif e["kind"] == "PYMALLOC_FREE":
                alive.pop(e["address"], None)
        for e in alive.values():
            live[(e["kind"], e["size"], innermost(cap, e, script))] += 1
        c.equal(live[("PYMALLOC_MALLOC", blob, "make_blobs")], COUNT - DROP,
                "%s: blobs alive at the end (the first %d freed)" % (tag, DROP))
        c.check(all(a in freed for a in blob_addresses[:DROP]),
                "%s: the dropped blobs have PYMALLOC_FREE events" % tag)
    # The dlsym'ed malloc: recorded as MALLOC on every interpreter (PIE + libpython.so included).
    c.equal(by[("MALLOC", k["NATIVE"], "native_malloc")], 1,
            "%s: ctypes.CDLL(None).malloc(%d) recorded as MALLOC" % (tag, k["NATIVE"]))


def check_reports(c, memray, capture, work, tag):
    p, data = mrtest.stats_json(memray, capture, work)
    if c.check(data is not None, "%s: stats --json" % tag):
        c.equal(data["metadata"].get("trace_python_allocators"), True,
                "%s: stats --json metadata.trace_python_allocators" % tag)
    p = mrtest.run([memray, "stats", capture])
    c.check(p.returncode == 0 and "PYMALLOC_MALLOC" in p.stdout and "PYMALLOC_CALLOC" in p.stdout,
            "%s: stats names the PYMALLOC allocators" % tag)
    for report in ("table", "flamegraph", "tree", "summary"):
        out = os.path.join(work, "%s-%s.out" % (tag, report))
        cmd = [memray, report, capture]
        if report in ("table", "flamegraph"):
            cmd[2:2] = ["-f", "-o", out]
        p = mrtest.run(cmd)
        text = p.stdout
        if report in ("table", "flamegraph") and os.path.exists(out):
            with open(out, errors="replace") as f:
                text = f.read()
        if not c.equal(p.returncode, 0, "%s: %s exit code" % (tag, report)):
            continue
        c.check("make_blobs" in text, "%s: %s shows make_blobs" % (tag, report))
        if report == "table":
            c.check("PYMALLOC_MALLOC" in text and "PYMALLOC_CALLOC" in text,
                    "%s: table shows the PYMALLOC allocators" % tag)


def main():
    memray, script_src, key = sys.argv[1:4]
    python = pythons.require(key)
    work = mrtest.scratch_dir("tpa-" + key)
    script = os.path.join(work, "objects.py")
    shutil.copy(script_src, script)
    k = constants(script)
    c = mrtest.Checker("trace-python-allocators-" + key)
    os.environ.pop("PYTHONMALLOC", None)
    for traced, pythonmalloc in ((True, None), (True, "malloc"), (False, None)):
        tag = "%s%s" % ("traced" if traced else "plain",
                        "-PYTHONMALLOC=" + pythonmalloc if pythonmalloc else "")
        capture = os.path.join(work, tag + ".bin")
        env = {"PYTHONMALLOC": pythonmalloc} if pythonmalloc else None
        extra = ["--trace-python-allocators"] if traced else []
        p = mrtest.memray_run(memray, capture, [script, str(COUNT), str(DROP)], python=python,
                              extra=extra, env=env)
        if not c.equal(p.returncode, 0, "%s: memray run exit code (stderr: %s)" % (tag, p.stderr)):
            continue
        c.check("done 1" in p.stdout, "%s: target ran to the end" % tag)
        p, cap = mrtest.parse_capture(memray, capture)
        if c.check(cap is not None, "%s: parse" % tag):
            check_capture(c, memray, cap, script, k, traced, pythonmalloc, tag)
        if traced and not pythonmalloc:
            check_reports(c, memray, capture, work, tag)
    c.finish()


if __name__ == "__main__":
    main()
