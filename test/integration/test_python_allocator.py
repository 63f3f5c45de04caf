"""`stats --json` metadata.python_allocator is what the interpreter ran with, recorded at capture
time: PYTHONMALLOC unset, malloc, pymalloc and pymalloc_debug, on one interpreter.

usage: test_python_allocator.py MEMRAY KEY   (KEY: an interpreter of test/pythons.py)
"""

import os
import subprocess
import sys

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)

SCRIPT = "data = [bytearray(100000) for _ in range(3)]\nprint(len(data))\n"

# What the interpreter's build uses without PYTHONMALLOC, from its own configuration.
_DEFAULT_ORACLE = (
    "import sysconfig\n"
    "name = 'pymalloc' if sysconfig.get_config_var('WITH_PYMALLOC') else 'malloc'\n"
    "print(name + (' debug' if sysconfig.get_config_var('Py_DEBUG') else ''))\n")


def main():
    memray, key = sys.argv[1:3]
    python = pythons.require(key)
    work = mrtest.scratch_dir("pyalloc")
    script = os.path.join(work, "alloc.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    c = mrtest.Checker("python-allocator-" + key)
    os.environ.pop("PYTHONMALLOC", None)  # the default case runs without it
    default = subprocess.run([python, "-c", _DEFAULT_ORACLE], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.strip()
    cases = [(None, default), ("malloc", "malloc"), ("pymalloc", "pymalloc"),
             ("pymalloc_debug", "pymalloc debug")]
    for setting, expected in cases:
        capture = os.path.join(work, "%s.bin" % (setting or "default"))
        run_env = {"PYTHONMALLOC": setting} if setting else {}
        p = mrtest.memray_run(memray, capture, [script], python=python, env=run_env)
        what = "PYTHONMALLOC=%s" % (setting or "(unset)")
        if not c.equal(p.returncode, 0, "%s: memray run exit code" % what):
            continue
        p, data = mrtest.stats_json(memray, capture, work)
        if c.check(data is not None, "%s: stats --json wrote its file" % what):
            c.equal(data["metadata"]["python_allocator"], expected,
                    "%s: metadata.python_allocator" % what)
    c.finish()


if __name__ == "__main__":
    main()
