"""CLI error cases: one line `memray: error: ...` and a non-zero exit, never a crash or a
traceback; options of later issues answered with a clear "not supported yet".

usage: test_cli_errors.py MEMRAY HELPER_PROGRAM
"""

import os
import sys

import mrtest


def expect_error(c, p, what, mention=None):
    c.check(p.returncode != 0 and not mrtest.crashed(p),
            "%s: non-zero exit without crash (%d)" % (what, p.returncode))
    c.check(mrtest.one_error_line(p), "%s: exactly one line 'memray: error: ...' on stderr" % what)
    if mention:
        c.check(mention in p.stderr, "%s: message mentions %r" % (what, mention))


def main():
    memray, program = sys.argv[1:3]
    work = mrtest.scratch_dir("cli")
    c = mrtest.Checker("cli-errors")

    missing = os.path.join(work, "does-not-exist.bin")
    for cmd in ("summary", "stats", "parse"):
        p = mrtest.run([memray, cmd, missing])
        expect_error(c, p, "%s of a missing file" % cmd, mention=missing)

    not_capture = os.path.join(work, "not-a-capture.bin")
    with open(not_capture, "w") as f:
        f.write("this is plainly not a memray capture file\n" * 20)
    empty = os.path.join(work, "empty.bin")
    open(empty, "w").close()
    for path in (not_capture, empty):
        for cmd in ("summary", "stats", "parse"):
            p = mrtest.run([memray, cmd, path])
            expect_error(c, p, "%s of %s" % (cmd, os.path.basename(path)), mention=path)

    # A directory where a file is expected.
    p = mrtest.run([memray, "stats", work])
    expect_error(c, p, "stats of a directory")

    # Output exists without -f: refused before running anything, the file is left alone.
    existing = os.path.join(work, "existing.bin")
    with open(existing, "w") as f:
        f.write("precious")
    marker = os.path.join(work, "ran-marker")
    p = mrtest.run([memray, "run", "-o", existing, "--", "/bin/sh", "-c", "touch " + marker])
    expect_error(c, p, "run with an existing output", mention=existing)
    c.equal(open(existing).read(), "precious", "existing output untouched")
    c.check(not os.path.exists(marker), "program not run when the output exists")

    # stats --json -o existing without -f.
    real = os.path.join(work, "real.bin")
    p = mrtest.run([memray, "run", "-o", real, "--", program])
    if c.check(p.returncode == 0 and os.path.exists(real), "made a real capture for stats -o"):
        p = mrtest.run([memray, "stats", "--json", "-o", existing, real])
        expect_error(c, p, "stats --json with an existing output", mention=existing)
        c.equal(open(existing).read(), "precious", "existing json output untouched")
        p = mrtest.run([memray, "run", "-f", "-o", real, "--", program])
        c.equal(p.returncode, 0, "run -f overwrites an existing capture")

    # Program not found (native and script).
    nowhere = os.path.join(work, "no-such-program")
    p = mrtest.run([memray, "run", "-o", os.path.join(work, "x1.bin"), "--", nowhere])
    expect_error(c, p, "run of a missing program", mention=nowhere)
    p = mrtest.run([memray, "run", "-o", os.path.join(work, "x2.bin"), "--",
                    "memray-no-such-command-on-path"])
    expect_error(c, p, "run of a command not on PATH", mention="memray-no-such-command-on-path")
    script = os.path.join(work, "no-such-script.py")
    p = mrtest.run([memray, "run", "-o", os.path.join(work, "x3.bin"), script])
    expect_error(c, p, "run of a missing script", mention=script)

    # A log level that is not 0-3: one line, nothing run, no file.
    for value in ("4", "debug"):
        out = os.path.join(work, "x5.bin")
        p = mrtest.run([memray, "run", "-o", out, "--", "/bin/sh", "-c", "touch " + marker],
                       env={"MEMRAY_LOG_LEVEL": value})
        expect_error(c, p, "run with MEMRAY_LOG_LEVEL=%s" % value, mention="MEMRAY_LOG_LEVEL")
        c.check(not os.path.exists(marker) and not os.path.exists(out),
                "run with MEMRAY_LOG_LEVEL=%s: nothing run, no capture" % value)
        p = mrtest.run([memray, "attach", "-o", out, str(os.getpid())],
                       env={"MEMRAY_LOG_LEVEL": value})
        expect_error(c, p, "attach with MEMRAY_LOG_LEVEL=%s" % value, mention="MEMRAY_LOG_LEVEL")
        c.check(not os.path.exists(out), "attach with MEMRAY_LOG_LEVEL=%s: no capture" % value)

    # --follow-fork with a live mode: memray's refusal (also once the live view exists).
    k_live = "--follow-fork cannot be used with the live TUI"
    for live in ("--live", "--live-remote"):
        p = mrtest.run([memray, "run", "--follow-fork", live, "-o", os.path.join(work, "x5.bin"),
                        "--", program])
        expect_error(c, p, "run --follow-fork %s" % live, mention=k_live)
        c.equal(p.returncode, 2, "run --follow-fork %s: usage exit status" % live)
    p = mrtest.run([memray, "attach", "--follow-fork", str(os.getpid())])
    expect_error(c, p, "attach --follow-fork without -o (the live view)", mention=k_live)
    c.check(not os.path.exists(os.path.join(work, "x5.bin")), "no capture from the refusals")
    # Python's allocators exist only in Python programs.
    out = os.path.join(work, "x6.bin")
    p = mrtest.run([memray, "run", "--trace-python-allocators", "-o", out, "--", program])
    expect_error(c, p, "run --trace-python-allocators -- program", mention="Python")
    c.check(not os.path.exists(out), "run --trace-python-allocators -- program: no capture")
    # Live mode: memray's refusals, word for word, before anything runs (docs/live.md).
    for opt, message in (
            (["--live-port", "1234"], "The --live-port argument requires --live-remote"),
            (["--live", "--follow-fork"], "--follow-fork cannot be used with the live TUI"),
            (["--live-remote", "--aggregate"], "--aggregate cannot be used with the live TUI"),
            (["--live", "--buffered-file-io"],
             "--buffered-file-io cannot be used with --live/--live-remote"),
            (["--live", "-o", os.path.join(work, "x6.bin")],
             "argument --live: not allowed with argument -o/--output"),
            (["--live-remote", "-p", "70000"], "Invalid port: 70000")):
        p = mrtest.run([memray, "run", *opt, "--", "/bin/sh", "-c", "touch " + marker])
        expect_error(c, p, "run %s" % " ".join(opt), mention=message)
        c.check(not os.path.exists(marker), "run %s: nothing run" % " ".join(opt))
    p = mrtest.run([memray, "attach", "--aggregate", str(os.getpid())])
    expect_error(c, p, "attach --aggregate without -o",
                 mention="Can't use aggregated mode without an output file.")
    c.finish()


if __name__ == "__main__":
    main()
