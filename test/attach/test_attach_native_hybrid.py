"""`memray attach --native` to a running Python service that calls a C extension module: the
extension (test/integration/targets/hybrid_ext.c, compiled here against the interpreter's
headers) was loaded and the service's frames were running long before the attach. Between
attach and detach the service runs main -> outer -> py_caller -> hybrid_ext.alloc(N, KEEP);
the capture must hold exactly those N mallocs (N - KEEP freed), and the leaks report's stack
must read hybrid_alloc (hybrid_ext.c:line) <- interpreter frames <- py_caller <- outer <- main
<- <module>, then the interpreter's own outer native frames (attach keeps them).

usage: test_attach_native_hybrid.py MEMRAY VERSION EXT_SOURCE CALLER_SCRIPT
"""

import os
import shutil
import sys

import attachtest as at
import mrtest
import pythons  # noqa: E402 (made importable by mrtest)
import nativetest as nt
from test_native_hybrid import build_extension, check_events, check_hybrid, ext_size, \
    is_python_frame

N_CALLS = 6
N_KEPT = 2


def main():
    memray, version, ext_source, script_src = sys.argv[1:5]
    python = pythons.require(version)
    at.require_attach(memray)
    c = mrtest.Checker("attach-native-hybrid-" + version)
    work = mrtest.scratch_dir("anh" + version)
    _, py_version = build_extension(python, ext_source, work)
    script = os.path.join(work, "caller.py")
    shutil.copy(script_src, script)
    marks = nt.marker_lines(script, r"# MARK: (\w+)")
    size = ext_size(ext_source)

    t = at.Target([python, script, work, "serve"], env={"PYTHONDONTWRITEBYTECODE": "1"})
    if not c.check(t.expect(r"^ready size %d$" % size) is not None, "service ready"):
        t.kill()
        c.finish()
    # Before the attach: not in the capture (one block kept, never freed, never recorded).
    c.check(t.request("alloc 3 1", r"^done 3 1$") is not None, "calls before attach")

    capture = os.path.join(work, "attached.bin")
    p = at.attach(memray, t.pid, capture, extra=["--native"])
    if not at.check_attached(c, p, "attach --native"):
        t.kill()
        c.finish()
    c.check(t.request("alloc %d %d" % (N_CALLS, N_KEPT), r"^done ") is not None,
            "calls while attached")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, capture, "detach")
    c.check(t.running(), "service running after detach")
    c.check(t.request("alloc 2 0", r"^done 2 0$") is not None, "call after detach")
    c.equal(t.finish(), 0, "service exit code")
    if not c.check(os.path.exists(capture), "capture written"):
        c.finish()

    check_events(c, memray, capture, size, N_CALLS, N_KEPT, "attach")
    check_hybrid(c, memray, capture, work, ext_source, script,
                 [("py_caller", marks["py_call"]), ("outer", marks["outer_call"]),
                  ("main", marks["serve_call"]), ("<module>", marks["module"])],
                 N_KEPT, "attach", outermost_is_module=False, py_version=py_version)
    # Attach keeps the frames outside the script: the interpreter's start-up, all native.
    p, rows = nt.csv_rows(memray, capture, work)
    mine = nt.rows_of_size(rows or [], size)
    if len(mine) == 1:
        frames = mine[0].frames
        module = [i for i, f in enumerate(frames) if f[1] == script and f[0] == "<module>"]
        outside = frames[module[-1] + 1:] if module else []
        c.check(len(outside) >= 1 and not any(is_python_frame(f) for f in outside),
                "attach: the interpreter's native frames outside <module> are kept: %s"
                % nt.show(outside, 20))
    c.finish()


if __name__ == "__main__":
    main()
