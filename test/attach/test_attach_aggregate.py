"""`memray attach --aggregate` on a running native service: known requests between attach and
detach, then the aggregated capture's leak and high-water-mark views (through `transform csv`)
hold exactly those allocations, per function; `--duration` prints its one-line summary from the
aggregated capture.

usage: test_attach_aggregate.py MEMRAY NATIVE_SERVICE
"""

import csv
import os
import re
import subprocess
import sys
import time

import attachtest as at
import mrtest


def rows_by_function(memray, capture, work, leaks):
    """{innermost function: (allocations, bytes)} of the capture's leak or peak view."""
    out = os.path.join(work, "view-%s.csv" % ("leaks" if leaks else "peak"))
    p = mrtest.run([memray, "transform", "csv", "-f", "-o", out, *(["--leaks"] if leaks else []),
                    capture])
    if p.returncode != 0:
        return None
    totals = {}
    with open(out) as f:
        for row in csv.DictReader(f):
            stack = row["stack_trace"] if "stack_trace" in row else list(row.values())[-1]
            func = stack.split("|")[0].split(";")[0]
            n, b = totals.get(func, (0, 0))
            totals[func] = (n + int(row["num_allocations"]), b + int(row["size"]))
    return totals


def main():
    memray, exe = sys.argv[1:3]
    at.require_attach(memray)
    c = mrtest.Checker("attach-aggregate")
    work = mrtest.scratch_dir("at-agg")
    t = at.Target([exe])
    line = t.expect(r"^SIZES ")
    sizes = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line or "")}
    if not c.check(t.expect(r"^ready ") is not None and len(sizes) == 4, "target ready"):
        t.kill()
        c.finish()
    c.check(t.request("a 3", r"^done a 3") is not None, "pre-attach requests served")

    capture = os.path.join(work, "agg.bin")
    p = at.attach(memray, t.pid, capture, extra=["--aggregate"])
    if not at.check_attached(c, p, "attach --aggregate"):
        t.kill()
        c.finish()
    c.check(t.request("a 5", r"^done a ") is not None, "requests on svc-alpha")
    c.check(t.request("b 4", r"^done b ") is not None, "requests on svc-beta")
    c.check(t.request("m 3", r"^done m ") is not None, "leaks on the main thread")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, capture, "detach")
    c.check(t.request("ping", r"^pong") is not None, "target answers after detach")

    p = mrtest.run([memray, "parse", capture])
    c.check(p.returncode == 0 and "CHECKPOINT " in p.stdout and "TRAILER" in p.stdout,
            "a complete aggregated capture (checkpoint and trailer)")
    c.check(not re.search(r"^(ALLOCATION|DEALLOCATION) ", p.stdout, re.M), "no events in it")
    leaks = rows_by_function(memray, capture, work, True)
    if c.check(leaks is not None, "transform csv --leaks"):
        c.equal(leaks.get("leak_alpha"), (5, 5 * sizes["alpha"]), "leaks of leak_alpha")
        c.equal(leaks.get("leak_beta"), (4, 4 * sizes["beta"]), "leaks of leak_beta")
        c.equal(leaks.get("leak_main"), (3, 3 * sizes["main"]), "leaks of leak_main")
        c.equal(leaks.get("temp_work"), None, "no leak in temp_work")
    peak = rows_by_function(memray, capture, work, False)
    if c.check(peak is not None, "transform csv"):
        # The service frees each temporary block before its next request: the peak (the end
        # here: nothing is freed after the last leak) holds the same leaks.
        c.equal(peak.get("leak_main"), (3, 3 * sizes["main"]), "leak_main at the high-water mark")

    # --duration: the summary line is read from the aggregated capture.
    timed = os.path.join(work, "timed.bin")
    cmd = [memray, "attach", "--aggregate", "-o", timed, "--duration", "2", str(t.pid)]
    print("$ " + " ".join(cmd))
    cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = cli.stdout.readline().decode(errors="replace").strip()
    c.check(bool(first), "--duration: a line once tracking is active")
    c.check(t.request("m 2", r"^done m ") is not None, "--duration: main leaks while tracked")
    rest, err = cli.communicate(timeout=60)
    rest = rest.decode(errors="replace")
    print("  stdout: %s\n  stderr: %s" % (rest, err.decode(errors="replace")))
    c.equal(cli.returncode, 0, "--duration: exit code")
    m = re.search(r"\b(\d+) allocations\b", rest)
    c.check(m is not None and int(m.group(1)) >= 2,
            "--duration: one-line summary with the allocation count")
    at.wait_untraced(t.pid)
    leaks = rows_by_function(memray, timed, work, True)
    if c.check(leaks is not None, "transform csv --leaks of the --duration capture"):
        c.equal(leaks.get("leak_main"), (2, 2 * sizes["main"]), "--duration: leaks of leak_main")

    c.check(t.running(), "target still running at the end")
    c.equal(t.finish(), 0, "target exit code")
    c.finish()


if __name__ == "__main__":
    main()
