"""memray's spellings of `attach` options: --compress-on-exit (the default: compressed blocks),
--no-compress, and --method (memray's choice of debugger), accepted with a one-line note.

usage: test_options.py MEMRAY NATIVE_SERVICE
"""

import os
import re
import sys

import attachtest as at
import mrtest

k_flag_compressed = 1 << 3  # format::k_flag_compressed (src/format/records.hpp)


def main():
    memray, exe = sys.argv[1:3]
    at.require_attach(memray)
    c = mrtest.Checker("attach-options")
    work = mrtest.scratch_dir("at-opts")
    t = at.Target([exe])
    try:
        if not c.check(t.expect(r"^ready ") is not None, "target ready"):
            return
        for extra, what in ((["--compress-on-exit"], "compressed"),
                            (["--no-compress"], "uncompressed"),
                            (["--method", "gdb"], "compressed")):
            out = os.path.join(work, "%s.bin" % extra[0].strip("-"))
            p = at.attach(memray, t.pid, out, extra=extra)
            c.equal(p.returncode, 0, "attach %s" % " ".join(extra))
            if extra[0] == "--method":
                notes = [l for l in p.stderr.splitlines() if l.strip()]
                c.check(len(notes) == 1 and "--method" in notes[0] and "debugger" in notes[0],
                        "--method: one note that no debugger is needed (%r)" % notes)
            else:
                c.equal(p.stderr.strip(), "", "attach %s: nothing on stderr" % extra[0])
            c.check(t.request("a 2", r"^done a 2") is not None, "requests served")
            p = at.detach(memray, t.pid)
            c.equal(p.returncode, 0, "detach after attach %s" % " ".join(extra))
            p = mrtest.run([memray, "parse", out])
            m = re.search(r"^HEADER .*\bflags=0x([0-9a-f]+)", p.stdout, re.M)
            if c.check(p.returncode == 0 and m is not None, "parse shows the header of %s" % out):
                compressed = bool(int(m.group(1), 16) & k_flag_compressed)
                c.equal(compressed, what == "compressed", "attach %s: blocks %s" % (extra[0], what))
        p = at.attach(memray, t.pid, os.path.join(work, "both.bin"),
                      extra=["--compress-on-exit", "--no-compress"])
        c.check(p.returncode == 2, "--compress-on-exit with --no-compress is refused")
        p = at.attach(memray, t.pid, os.path.join(work, "bad.bin"), extra=["--method", "strace"])
        c.check(p.returncode == 2, "--method outside memray's choices is refused")
        c.check(t.running() and t.request("ping", r"^pong", 10) is not None, "target still running")
    finally:
        t.finish()
    c.finish()


if __name__ == "__main__":
    main()
