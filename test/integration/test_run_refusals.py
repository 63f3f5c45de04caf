"""`memray run` refuses, before anything runs, what memray refuses: a file or -c code that is not
valid Python (memray's own message), and an interpreter the payload cannot track ("unsupported
Python X.Y"). Also memray's global spellings -V (version) and -v (verbosity).

usage: test_run_refusals.py MEMRAY
"""

import glob
import os
import stat
import sys

import mrtest
import pythons

k_invalid = "Only valid Python files or commands can be executed under memray"


def refused(c, p, what, mention):
    c.check(p.returncode == 1 and not mrtest.crashed(p), "%s: exit 1 (got %d)" % (what, p.returncode))
    c.check(mrtest.one_error_line(p), "%s: exactly one line 'memray: error: ...'" % what)
    c.check(mention in p.stderr, "%s: message says %r" % (what, mention))
    c.check("Writing profile results" not in p.stdout, "%s: nothing was started" % what)


def old_python(version):
    """A real interpreter of an untracked version from pyenv, or None."""
    found = sorted(glob.glob(os.path.join(pythons.pyenv_root(), "versions", version + ".*",
                                          "bin", "python")))
    return found[-1] if found else None


def simulated_python(work, python, version):
    """Debian's interpreter made to report another version (sys.version_info, set by a
    sitecustomize before any -c code runs): how a Python newer than 3.13 looks to the bootstrap."""
    site = os.path.join(work, "site" + version)
    os.makedirs(site, exist_ok=True)
    major, minor = (int(x) for x in version.split("."))
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write("import sys\nsys.version_info = (%d, %d, 0, 'final', 0)\n" % (major, minor))
    path = os.path.join(work, "python" + version)
    with open(path, "w") as f:
        f.write('#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' % (site, python))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def main():
    memray = sys.argv[1]
    python = pythons.find("debian")
    if python is None:
        mrtest.skip(pythons.missing_reason("debian"))
    work = mrtest.scratch_dir("refuse")
    c = mrtest.Checker("run-refusals")
    marker = os.path.join(work, "ran")

    # Not Python: a shell script, a text file with a syntax error, code given with -c.
    shell = os.path.join(work, "script.sh")
    with open(shell, "w") as f:
        f.write("#!/bin/sh\ntouch %s\nif [ 1 ]; then echo hi; fi\n" % marker)
    broken = os.path.join(work, "broken.py")
    with open(broken, "w") as f:
        f.write("import os\nopen(%r, 'w').close()\ndef f(:\n    pass\n" % marker)
    nul = os.path.join(work, "nul.py")
    with open(nul, "wb") as f:
        f.write(b"open(%r, 'w').close()\n\x00\n" % marker.encode())
    for target, what in ((shell, "a shell script"), (broken, "a syntax error"), (nul, "a NUL byte")):
        out = os.path.join(work, "x.bin")
        p = mrtest.run([memray, "run", "--python", python, "-o", out, target])
        refused(c, p, "run of %s" % what, k_invalid)
        c.check(not os.path.exists(marker) and not os.path.exists(out),
                "run of %s: the file did not run, no capture" % what)
    p = mrtest.run([memray, "run", "--python", python, "-o", os.path.join(work, "c.bin"),
                    "-c", "open(%r, 'w').close()\nif True print(1)" % marker])
    refused(c, p, "run -c of invalid code", k_invalid)
    c.check(not os.path.exists(marker), "run -c of invalid code: nothing ran")

    # memray tests parsing, not compiling: `return` at module level parses, and then fails when
    # it runs (the script's own error, not memray's refusal).
    odd = os.path.join(work, "odd.py")
    with open(odd, "w") as f:
        f.write("print('before')\nreturn\n")
    p = mrtest.run([memray, "run", "--python", python, "-o", os.path.join(work, "odd.bin"), odd])
    c.check(k_invalid not in p.stderr, "a file that parses but does not compile is not refused")

    # Valid Python still runs.
    good = os.path.join(work, "good.py")
    with open(good, "w") as f:
        f.write("print('GOOD', sum(range(10)))\n")
    p = mrtest.run([memray, "run", "--python", python, "-o", os.path.join(work, "good.bin"), good])
    c.check(p.returncode == 0 and "GOOD 45" in p.stdout, "a valid script runs")

    # Interpreters the payload cannot track, given as --python and found on PATH as python3: the
    # real old ones this machine has (the bootstrap must parse as far as its version check under
    # 2.7) and ones that only say they are another version.
    toucher = os.path.join(work, "toucher.py")
    with open(toucher, "w") as f:
        f.write("open(%r, 'w').close()\n" % marker)
    interpreters = [(v, old_python(v)) for v in ("2.7", "3.6", "3.7")]
    for v, path in interpreters:
        if path is None:
            print("note: no Python %s under %s/versions: only a simulated one" % (
                v, pythons.pyenv_root()))
    interpreters = [(v, p) for v, p in interpreters if p]
    interpreters += [(v, simulated_python(work, python, v)) for v in ("3.7", "3.14")]
    for version, interpreter in interpreters:
        for form, args in (("file", [toucher]), ("-m", ["-m", "json.tool"]),
                           ("-c", ["-c", "open(%r, 'w').close()" % marker])):
            p = mrtest.run([memray, "run", "--python", interpreter,
                            "-o", os.path.join(work, "v.bin"), *args])
            what = "Python %s (%s), %s" % (version, interpreter, form)
            refused(c, p, what, "unsupported Python " + version)
            c.check(not os.path.exists(marker), "%s: the target did not run" % what)
    pathdir = os.path.join(work, "bin")
    os.mkdir(pathdir)
    os.symlink(interpreters[0][1], os.path.join(pathdir, "python3"))
    p = mrtest.run([memray, "run", "-o", os.path.join(work, "p.bin"), good],
                   env={"PATH": pathdir + ":" + os.environ.get("PATH", "")})
    refused(c, p, "python3 on PATH is %s" % interpreters[0][0],
            "unsupported Python " + interpreters[0][0])

    # The live view checks before it takes the terminal (the program's output goes to a file).
    # Its check runs with -E, which a simulated interpreter's PYTHONPATH does not survive.
    p = mrtest.run([memray, "run", "--live", "--python", python, "-c", "if True print(1)"],
                   timeout=60)
    refused(c, p, "run --live of invalid code", k_invalid)
    real = [(v, p) for v, p in interpreters if not p.startswith(work)]
    if real:
        p = mrtest.run([memray, "run", "--live", "--python", real[0][1], "-c", "pass"], timeout=60)
        refused(c, p, "run --live under Python %s" % real[0][0], "unsupported Python " + real[0][0])
    else:
        print("note: no real Python 2.7-3.7 here: run --live's version check is not exercised")

    # memray's global options: -V / --version, -v (repeatable) before the subcommand.
    for flag in ("-V", "--version"):
        p = mrtest.run([memray, flag])
        c.check(p.returncode == 0 and p.stdout.startswith("memray "), "memray %s prints the version" % flag)
    p = mrtest.run([memray, "-vv", "run", "--python", python, "-o", os.path.join(work, "vv.bin"),
                    good])
    c.check(p.returncode == 0 and "GOOD 45" in p.stdout, "memray -vv run works")
    c.check("debug" in p.stderr.lower() or "info" in p.stderr.lower() or p.stderr.strip() != "",
            "memray -vv run: the payload logs more (stderr not empty)")
    p = mrtest.run([memray, "run", "--python", python, "-o", os.path.join(work, "v0.bin"), good])
    c.check(p.returncode == 0 and p.stderr.strip() == "", "without -v the payload is quiet")
    c.finish()


if __name__ == "__main__":
    main()
