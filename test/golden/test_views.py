#!/usr/bin/python3
"""Re-captures views_target.py with the built memray and checks every view against what the
program announced (EXPECT lines) and where it allocated (# MARK: lines): the high-water mark,
--leaks, temporary allocations (thresholds 0 and 1) and --temporal intervals. Catches payload
regressions that the committed golden captures cannot.

usage: test_views.py MEMRAY VIEWS_DUMP TARGET.py
"""

import csv
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import mrtest  # noqa: E402
import pythons  # noqa: E402


def marks(path):
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if "# MARK: " in line:
                out[line.split("# MARK: ")[1].strip()] = n
    return out


def csv_rows(memray, capture, work, extra):
    out = os.path.join(work, "out.csv")
    p = mrtest.run([memray, "transform", "csv", "-f", "-o", out, *extra, capture])
    if p.returncode != 0:
        return None
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    # (innermost function, line) -> (count, bytes), summed over stacks
    agg = {}
    for r in rows:
        func, _, line = r["stack_trace"].split("|")[0].split(";")
        c, b = agg.get((func, int(line)), (0, 0))
        agg[(func, int(line))] = (c + int(r["num_allocations"]), b + int(r["size"]))
    return agg


def main():
    memray, dump, target = sys.argv[1:4]
    # Any 3.11+ will do (the target's line tables are read with the interpreter's own).
    found = pythons.available(["3.11", "3.12", "3.13", "debian"])
    if not found:
        mrtest.skip("no Python 3.11+ interpreter (pyenv 3.11-3.13 or Debian's python3)")
    python = found[0][1]
    c = mrtest.Checker("views")
    work = mrtest.scratch_dir("views")
    capture = os.path.join(work, "views.bin")
    p = mrtest.memray_run(memray, capture, [target], python=python)
    if not c.equal(p.returncode, 0, "memray run exit code"):
        c.finish()
    expect = {}
    for line in p.stdout.splitlines():
        if line.startswith("EXPECT "):
            _, what, func, size, count = line.split()
            expect.setdefault(what, (func, int(size), int(count)))  # first line of each kind
    m = marks(target)
    leak_f, leak_size, leak_n = expect["leak"][0], expect["leak"][1], expect["leak"][2]

    # High-water mark: the three peak buffers and the two leaks made before them.
    hwm = csv_rows(memray, capture, work, [])
    pf, ps, pn = expect["peak"]
    c.equal(hwm.get(("peak.<locals>.<listcomp>", m["peak"]), hwm.get((pf, m["peak"]))),
            (pn, pn * ps), "high-water mark: peak buffers")
    c.equal(hwm.get((leak_f, m["leak"])), (2, 2 * leak_size), "high-water mark: leaks so far")
    c.equal(len(hwm), 2, "high-water mark: nothing else alive")

    # --leaks: exactly the leaked buffers.
    leaks = csv_rows(memray, capture, work, ["--leaks"])
    all_leaks = [(int(s), int(n)) for w, (f, s, n) in
                 [(l.split()[1], (l.split()[2], l.split()[3], l.split()[4]))
                  for l in p.stdout.splitlines() if l.startswith("EXPECT leak ")]]
    c.equal(leaks, {(leak_f, m["leak"]): (sum(n for _, n in all_leaks),
                                         sum(s * n for s, n in all_leaks))}, "--leaks")

    # Temporary, threshold 0: freed before any other allocation on the thread: the five
    # temporaries, the slow-lived buffer (time does not count, allocations do) and the last peak
    # buffer (the list frees its items in order: the third is freed first).
    tf, ts, tn = expect["temporary"]
    sf, ss, sn = expect["slow"]
    t0 = csv_rows(memray, capture, work, ["--temporary-allocation-threshold", "0"])
    c.equal(t0.get((tf, m["temporary"])), (tn, tn * ts), "threshold 0: temporaries")
    c.equal(t0.get((sf, m["slow"])), (sn, ss), "threshold 0: slow-lived buffer")
    c.equal(t0.get((leak_f, m["leak"])), None, "threshold 0: leaks are not temporary")
    t1 = csv_rows(memray, capture, work, ["--temporary-allocations"])
    peak_key = ("peak.<locals>.<listcomp>", m["peak"])
    c.equal(t1.get(peak_key, t1.get((pf, m["peak"]))), (2, 2 * ps),
            "threshold 1: two of the three peak buffers")
    c.equal(t1.get((tf, m["temporary"])), (tn, tn * ts), "threshold 1: temporaries")

    # --temporal (the view under `flamegraph --temporal`): the slow-lived buffer spans ~20
    # memory samples; the temporaries are born and freed within one interval, so never listed;
    # the leaks never end.
    d = mrtest.run([dump, capture, "leaks", "--temporal"])
    c.equal(d.returncode, 0, "views_dump exit code")
    intervals = [l.split() for l in d.stdout.splitlines() if l.startswith("interval ")]
    slow = [i for i in intervals if i[1] == sf and int(i[2]) == m["slow"]]
    c.check(len(slow) == 1 and slow[0][4] != "never" and int(slow[0][4]) - int(slow[0][3]) >= 5,
            "temporal: slow-lived buffer born and freed several intervals apart: %r" % slow)
    c.check(slow and int(slow[0][6]) == ss, "temporal: slow-lived buffer's size")
    c.check(not [i for i in intervals if i[1] == tf], "temporal: temporaries not listed")
    never = sum(int(i[6]) for i in intervals if i[1] == leak_f and i[4] == "never")
    c.equal(never, sum(s * n for s, n in all_leaks), "temporal: leaks never freed")
    mem = [l.split() for l in d.stdout.splitlines() if l.startswith("memory ")][0]
    c.check(int(mem[1]) >= 10, "temporal: memory points recorded (%s)" % mem[1])

    # tree: the root total is the high-water mark.
    t = mrtest.run([memray, "tree", capture])
    total = pn * ps + 2 * leak_size
    c.check(("📂 %s (100.00 %%) %d allocations" % (mrtest.size_fmt(total), pn + 2)) in t.stdout,
            "tree root line shows the high-water mark")
    c.finish()


if __name__ == "__main__":
    main()
