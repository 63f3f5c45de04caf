"""Hybrid Python + native stacks: a C extension module (targets/hybrid_ext.c), compiled here
against the headers of the interpreter under test, mallocs N blocks (keeps KEEP) when called
from Python as main -> outer -> py_caller -> hybrid_ext.alloc (targets/hybrid_caller.py).
Under `memray run --native` the report's stack of those blocks must read, innermost first:
  hybrid_alloc (hybrid_ext.c:<EXT_ALLOC line>), interpreter C frames only, py_caller (py_call
  line), outer (outer_call line), main (main_call line), <module> (module line)
with only native frames between the Python frames; counts and bytes exact.

usage: test_native_hybrid.py MEMRAY run VERSION EXT_SOURCE CALLER_SCRIPT
       (VERSION: 3.8 ... 3.13 or "debian"). test/attach/test_attach_native_hybrid.py reuses
       build_extension() and check_hybrid() for `memray attach --native`.
"""

import os
import re
import shutil
import sys

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)
import nativetest as nt

N_CALLS = 9
N_KEPT = 4

_CONFIG = r"""
import sys, sysconfig
print(sysconfig.get_paths()["include"])
print(sysconfig.get_config_var("EXT_SUFFIX") or ".so")
print("%d.%d" % sys.version_info[:2])
"""

# Native functions that run outside the script's frames (process start-up, the interpreter's
# main, running a file, the eval loop itself): a hybrid stack must never show them between the
# extension and the Python frames that called it.
OUTER_FUNCTIONS = {"_start", "main", "__libc_start_main", "__libc_start_call_main", "Py_BytesMain",
                   "Py_RunMain", "Py_Main", "pymain_main", "pymain_run_python", "pymain_run_file",
                   "PyRun_AnyFileExFlags", "PyRun_SimpleFileExFlags", "_PyRun_SimpleFileObject",
                   "PyEval_EvalCode", "run_mod", "run_eval_code_obj", "_PyEval_EvalFrameDefault"}
# Interpreter call machinery between a Python frame and the C function it calls (cfunction_call,
# _PyObject_MakeTpCall, vectorcall helpers, inlined frames included) is a handful of frames.
MAX_GLUE_FRAMES = 10


def build_extension(python, ext_source, outdir):
    """Compiles hybrid_ext against `python`'s headers into outdir; returns the .so path, or
    skips when the compiler or the headers are missing."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        mrtest.skip("no C compiler (cc) to build the test's extension module")
    p = mrtest.run([python, "-c", _CONFIG])
    if p.returncode != 0:
        print("cannot read the interpreter's sysconfig")
        sys.exit(1)
    include, suffix, version = p.stdout.split()[:3]
    if not os.path.exists(os.path.join(include, "Python.h")):
        mrtest.skip("%s has no headers (%s/Python.h missing; Debian: apt-get install "
                    "python3-dev)" % (python, include))
    so = os.path.join(outdir, "hybrid_ext" + suffix)
    # The absolute source path goes into DWARF: the frame's file must be this very file.
    p = mrtest.run([cc, "-shared", "-fPIC", "-g", "-O1", "-I" + include,
                    os.path.realpath(ext_source), "-o", so])
    if p.returncode != 0:
        print("building the extension module failed")
        sys.exit(1)
    return so, tuple(int(x) for x in version.split("."))


def ext_size(ext_source):
    with open(ext_source) as f:
        return int(re.search(r"#define HYBRID_SIZE (\d+)", f.read()).group(1))


def is_python_frame(frame):
    """Python frames have a .py file (or a frozen/bootstrap pseudo-file); native frames have a
    C/C++ source or, unsymbolised, the object's path."""
    return frame[1].endswith(".py") or frame[1].startswith("<")


def is_outer_function(name):
    return name.split("@")[0] in OUTER_FUNCTIONS


def check_hybrid(c, memray, capture, work, ext_source, script, python_frames, kept, what,
                 outermost_is_module, py_version):
    """The leaks report's stack of the extension's blocks: hybrid_alloc at the malloc line,
    then a few interpreter frames, then python_frames [(function, line)] of `script` in order.
    Before 3.11 each Python call recurses in C, so native frames separate the script's frames;
    from 3.11 one eval loop runs them all, so they are adjacent. `kept` blocks of the size must
    be leaked, in one row."""
    size = ext_size(ext_source)
    alloc_line = nt.marker_lines(ext_source)["EXT_ALLOC"]
    p, rows = nt.csv_rows(memray, capture, work)
    if not c.equal(p.returncode, 0, "%s: transform csv --leaks exit code" % what) or rows is None:
        return
    mine = nt.rows_of_size(rows, size)
    if not c.equal(len(mine), 1, "%s: one location leaks %d-byte blocks" % (what, size)):
        for r in mine:
            print("       " + nt.show(r.frames, 30))
        return
    r = mine[0]
    c.equal((r.allocator, r.count, r.size), ("MALLOC", kept, kept * size),
            "%s: allocator, count and bytes leaked there" % what)
    frames = r.frames
    print("  stack: " + nt.show(frames, 40))
    c.check(bool(frames) and nt.frame_matches(frames[0], "hybrid_alloc", ext_source, alloc_line),
            "%s: innermost frame is hybrid_alloc (%s:%d), got %s"
            % (what, os.path.basename(ext_source), alloc_line, nt.show(frames[:1])))
    # Python frames of the script, in order, and what lies between them.
    positions = [i for i, f in enumerate(frames) if f[1] == script]
    got_python = [(frames[i][0], frames[i][2]) for i in positions]
    c.equal(got_python, python_frames, "%s: the script's Python frames, innermost first" % what)
    if positions:
        glue = frames[1:positions[0]]
        c.check(0 < len(glue) <= MAX_GLUE_FRAMES and
                not any(is_python_frame(f) or is_outer_function(f[0]) for f in glue),
                "%s: 1..%d interpreter call frames between hybrid_alloc and %s, none of them "
                "the eval loop or start-up: %s"
                % (what, MAX_GLUE_FRAMES, python_frames[0][0], nt.show(glue)))
        for a, b in zip(positions, positions[1:]):
            glue = frames[a + 1:b]
            bad = [f for f in glue if is_python_frame(f) or is_outer_function(f[0])]
            if py_version >= (3, 11):
                ok = not glue
                want = "no frame (one eval loop runs both)"
            else:
                ok = 0 < len(glue) <= MAX_GLUE_FRAMES and not bad
                want = "1..%d interpreter call frames" % MAX_GLUE_FRAMES
            c.check(ok, "%s: %s between %s and %s: got %s"
                    % (what, want, frames[a][0], frames[b][0], nt.show(glue)))
        outside = frames[positions[-1] + 1:]
        if outermost_is_module:
            c.check(not any(is_python_frame(f) for f in outside),
                    "%s: no Python frame outside <module> (memray run starts at the script): %s"
                    % (what, nt.show(outside)))


def check_events(c, memray, capture, size, calls, kept, what, py_version=None):
    """`memray parse`: exactly calls mallocs of the size, calls - kept of them freed.
    `py_version`: under `memray run` (None under attach, which has no launcher to leave out)."""
    p, cap = mrtest.parse_capture(memray, capture)
    if not c.equal(p.returncode, 0, "%s: parse exit code" % what) or cap is None:
        return
    mallocs = [e for e in cap.events if e["kind"] == "MALLOC" and e["size"] == size]
    c.equal(len(mallocs), calls, "%s: MALLOC events of %d bytes" % (what, size))
    live, freed = {}, 0
    for e in cap.events:
        if e["kind"] == "MALLOC" and e["size"] == size:
            live[e["address"]] = e
        elif e["kind"] == "FREE" and e["address"] in live:
            del live[e["address"]]
            freed += 1
    c.equal(freed, calls - kept, "%s: frees of those blocks" % what)
    c.check(all(cap.native_depth(e["node"]) >= 2 for e in mallocs),
            "%s: every one has native frames" % what)
    # The stored path, innermost first: the extension's call site with the innermost eval-loop
    # frame (native), the Python frames, then the native frames out to the eval-loop call that
    # runs <module> and none outside it under `memray run` (under attach, all of them out to
    # main; docs/native.md). From 3.11 one eval-loop call runs all four Python frames, so
    # nothing native is stored outside them; before, each frame has its own call and the
    # native frames between those calls come after the Python frames.
    shapes = set()
    for e in mallocs:
        kinds = ["py" if n["kind"].lower().startswith("py") else "nat"
                 for _, n in cap._chain(e["node"]) if n is not None]
        shapes.add(tuple(k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k))
    if py_version is None:
        c.equal(sorted(shapes), [("nat", "py", "nat")],
                "%s: stored as call site, Python frames, outer native frames" % what)
    elif py_version >= (3, 11):
        c.equal(sorted(shapes), [("nat", "py")],
                "%s: stored as call site, then Python frames, nothing outside <module>" % what)
    else:
        c.equal(sorted(shapes), [("nat", "py", "nat")],
                "%s: stored as call site, Python frames, the native frames between their eval-loop "
                "calls" % what)


def main():
    memray, mode, version, ext_source, script_src = sys.argv[1:6]
    if mode != "run":
        raise SystemExit("unknown mode " + mode)
    python = pythons.require(version)
    c = mrtest.Checker("native-hybrid-" + version)
    work = mrtest.scratch_dir("nhy" + version)
    _, py_version = build_extension(python, ext_source, work)
    script = os.path.join(work, "caller.py")
    shutil.copy(script_src, script)
    marks = nt.marker_lines(script, r"# MARK: (\w+)")
    size = ext_size(ext_source)

    capture = os.path.join(work, "hybrid.bin")
    p = mrtest.memray_run(memray, capture, [script, work, str(N_CALLS), str(N_KEPT)],
                          python=python, native=True,
                          env={"PYTHONDONTWRITEBYTECODE": "1", "MEMRAY_STACK_CHECK": "abort",
                               "MEMRAY_LOG_LEVEL": "1"})
    c.equal(p.returncode, 0, "memray run --native exit code (a stack that differs aborts it)")
    c.check("allocated %d kept %d size %d" % (N_CALLS, N_KEPT, size) in p.stdout,
            "script output passed through")
    # Under `memray run` the native walk of a stack with Python frames ends at the eval-loop
    # call that runs the outermost of them, while the thread's previous such stack got there
    # within 8 frames (docs/native.md); the stack check compared each such walk with libunwind's
    # innermost frames. From 3.11 the extension's mallocs are such stacks (one eval-loop call);
    # before, their four eval-loop calls take ~15 frames and the history's walk takes them, and
    # only a thread's first stack is walked so.
    m = re.search(r"stack check: (\d+) native stacks compared with libunwind, (\d+) differed, "
                  r".*, (\d+) ended at the eval-loop call", p.stderr)
    if c.check(m is not None, "the payload reported its stack check"):
        c.equal(int(m.group(2)), 0, "stacks that differ from libunwind")
        c.check(int(m.group(3)) >= (N_CALLS if py_version >= (3, 11) else 1),
                "walks that ended at the outermost Python frames' eval-loop call: %s"
                % m.group(3))
    if not c.check(os.path.exists(capture), "capture written"):
        c.finish()
    check_events(c, memray, capture, size, N_CALLS, N_KEPT, "run", py_version)
    check_hybrid(c, memray, capture, work, ext_source, script,
                 [("py_caller", marks["py_call"]), ("outer", marks["outer_call"]),
                  ("main", marks["main_call"]), ("<module>", marks["module"])],
                 N_KEPT, "run", outermost_is_module=True, py_version=py_version)
    c.finish()


if __name__ == "__main__":
    main()
