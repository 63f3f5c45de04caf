"""--aggregate: reports on an aggregated capture give the same numbers as on a full capture of
the same (deterministic) run; a SIGKILLed --aggregate run leaves a capture that reads up to its
last checkpoint; what an aggregated capture cannot give is refused with memray's messages.

usage: test_aggregate.py MEMRAY compare-native TARGET
       test_aggregate.py MEMRAY compare-python VERSION SCRIPT
       test_aggregate.py MEMRAY kill TARGET
       test_aggregate.py MEMRAY refusals TARGET
"""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)

TRANSFORMS = ["gprof2dot", "csv", "speedscope", "pprof"]
# A Python target must allocate the same way in both runs.
DETERMINISTIC_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def normalize_html(text):
    """The data of an HTML report without what differs between two runs of the same program."""
    m = re.search(r'<script type="application/json" id="memray-data">(.*?)</script>', text, re.S)
    if not m:
        return text
    data = json.loads(m.group(1))
    meta = data.get("meta", {})
    for key in VOLATILE_META:
        meta.pop(key, None)
    data.pop("memory", None)  # RSS samples: differ from run to run
    # [tid, name, ...]: thread ids differ from run to run.
    data["threads"] = [t[1:] if isinstance(t, list) else t for t in data.get("threads", [])]
    return json.dumps(data, sort_keys=True, indent=1)


# Differ between two runs of the same program, or name the capture.
VOLATILE_META = {"duration_us", "pid", "peak_time_us", "start_ms", "capture", "command"}


def decode_pprof(path):
    """protoc's text form of a pprof profile (gzipped protobuf), without its times."""
    import gzip
    proto = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden",
                         "profile.proto")
    with open(path, "rb") as f:
        raw = gzip.decompress(f.read())
    p = subprocess.run(["protoc", "--decode", "perftools.profiles.Profile",
                        "-I", os.path.dirname(proto), os.path.basename(proto)],
                       input=raw, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        return "protoc failed: " + p.stderr.decode()
    return "\n".join(l for l in p.stdout.decode().splitlines()
                     if not l.strip().startswith(("time_nanos", "duration_nanos")))


def reports(memray, capture, work, tag):
    """Every reporter's output on `capture`, as comparable text, by report name."""
    p = mrtest.run([memray, "parse", capture])
    header = re.search(r'command_line=("(?:[^"\\]|\\.)*")', p.stdout)
    command = json.loads(header.group(1)) if header else None

    def plain(text):
        text = text.replace(command, "<COMMAND>") if command else text
        text = text.replace(capture, "<CAPTURE>").replace(os.path.basename(capture), "<CAPTURE>")
        # The time of the high-water mark differs from run to run.
        return re.sub(r" at \d+\.\d+ s\)", " at <TIME>)", text)

    out = {}
    for leaks in (False, True):
        extra = ["--leaks"] if leaks else []
        suffix = "-leaks" if leaks else ""
        for kind in ("flamegraph", "table"):
            html = os.path.join(work, "%s-%s%s.html" % (tag, kind, suffix))
            p = mrtest.run([memray, kind, "-f", "-o", html, *extra, capture])
            out[kind + suffix] = (p.returncode, normalize_html(open(html).read())
                                  if p.returncode == 0 else p.stderr)
        for fmt in TRANSFORMS:
            if fmt == "pprof" and not shutil.which("protoc"):
                print("pprof not compared: protoc is not installed")
                continue
            dest = os.path.join(work, "%s-%s%s.out" % (tag, fmt, suffix))
            p = mrtest.run([memray, "transform", fmt, "-f", "-o", dest, *extra, capture])
            body = ""
            if p.returncode == 0:
                if fmt == "pprof":
                    body = decode_pprof(dest)
                else:
                    with open(dest, encoding="utf-8", errors="replace") as f:
                        body = f.read()
            out["transform-" + fmt + suffix] = (p.returncode, plain(body))
    p = mrtest.run([memray, "tree", capture])
    out["tree"] = (p.returncode, plain(p.stdout))
    p = mrtest.run([memray, "summary", "-r", "1000", capture])
    out["summary"] = (p.returncode, plain(p.stdout))
    return out


def compare(c, memray, work, run_target):
    full = os.path.join(work, "full.bin")
    agg = os.path.join(work, "agg.bin")
    p = run_target(full, [])
    if not c.equal(p.returncode, 0, "full run exit code"):
        c.finish()
    p = run_target(agg, ["--aggregate"])
    if not c.equal(p.returncode, 0, "--aggregate run exit code"):
        c.finish()
    size_full, size_agg = os.path.getsize(full), os.path.getsize(agg)
    print("capture sizes: full %d bytes, aggregated %d bytes" % (size_full, size_agg))
    p, cap = mrtest.parse_capture(memray, agg)
    c.check(cap is not None and not cap.events, "the aggregated capture holds no events")
    c.check("CHECKPOINT " in p.stdout and "AGGREGATED_ALLOCATION " in p.stdout,
            "parse shows checkpoints and aggregated allocations")
    a = reports(memray, full, work, "full")
    b = reports(memray, agg, work, "agg")
    for name in a:
        c.equal(b[name][0], 0, "%s exit code on the aggregated capture" % name)
        c.check(a[name][0] == 0 and a[name][1] == b[name][1] and a[name][1] != "",
                "%s: same output from the full and the aggregated capture" % name)
        if a[name][1] != b[name][1]:
            show_difference(a[name][1], b[name][1])


def show_difference(x, y):
    xl, yl = x.splitlines(), y.splitlines()
    for i, (l1, l2) in enumerate(zip(xl, yl)):
        if l1 != l2:
            print("  first difference at line %d:\n    full: %s\n    agg:  %s" % (i + 1, l1[:300], l2[:300]))
            return
    print("  lengths differ: %d vs %d lines" % (len(xl), len(yl)))


def kill_mid_run(c, memray, target, work):
    """SIGKILL during --aggregate: the capture reads up to its last checkpoint, and the reports
    show exactly that checkpoint's numbers."""
    capture = os.path.join(work, "killed.bin")
    cmd = [memray, "run", "--aggregate", "-o", capture, "--", target, "forever"]
    print("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ticks, buf = -1, b""
    deadline = time.monotonic() + 60
    # At least 2.5 s of ticks: two checkpoints (one a second) must be in the file.
    while ticks < 250 and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            found = re.findall(rb"TICK (\d+)", buf)
            if found:
                ticks = int(found[-1])
            buf = buf[-64:]
    pid = mrtest.find_target_pid(proc.pid, target)
    if not c.check(pid is not None and ticks >= 250, "target ran 2.5 s (%d ticks)" % ticks):
        proc.kill()
        proc.wait()
        c.finish()
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    p = mrtest.run([memray, "parse", capture])
    c.equal(p.returncode, 0, "parse exit code on the killed capture")
    checkpoints = [l for l in p.stdout.splitlines() if l.startswith("CHECKPOINT ")]
    c.check(len(checkpoints) >= 2, "at least two checkpoints before the kill (%d)" % len(checkpoints))
    c.check("TRAILER" not in p.stdout, "no trailer in a killed capture")
    # The last complete checkpoint: its AGGREGATED_ALLOCATION lines are those between the
    # previous CHECKPOINT line and its own.
    lines = p.stdout.splitlines()
    last = max(i for i, l in enumerate(lines) if l.startswith("CHECKPOINT "))
    prev = max([i for i, l in enumerate(lines[:last]) if l.startswith("CHECKPOINT ")] or [-1])
    table = [fields(l) for l in lines[prev + 1:last] if l.startswith("AGGREGATED_ALLOCATION ")]
    leaked = sum(t["bytes_leaked"] for t in table)
    at_peak = sum(t["bytes_in_high_water_mark"] for t in table)
    cp = fields(lines[last])
    c.equal(len(table), cp["locations"], "the last checkpoint lists as many locations as it says")
    c.equal(at_peak, cp["peak_bytes"], "its high-water-mark table adds up to its peak")
    c.equal(leaked, cp["heap"], "its leak table adds up to its heap")
    # The 1000-byte blocks of the loop: every other one kept, so about ticks/2 of them, and the
    # checkpoint is at most ~1 s (100 ticks) older than the kill.
    loop = [t for t in table if t["allocator"] == "MALLOC" and t["bytes_leaked"] and
            t["bytes_leaked"] % 1000 == 0 and t["n_allocations_leaked"] * 1000 == t["bytes_leaked"]
            and t["n_allocations_leaked"] > 8]
    kept = sum(t["n_allocations_leaked"] for t in loop)
    c.check(ticks // 2 - 80 <= kept <= ticks // 2 + 2,
            "the loop's kept blocks at the last checkpoint (%d) match the ticks before the kill "
            "(%d) within a second" % (kept, ticks))

    # Reports read that checkpoint, say the capture is incomplete, and show its numbers.
    csv_out = os.path.join(work, "killed.csv")
    p = mrtest.run([memray, "transform", "csv", "--leaks", "-f", "-o", csv_out, capture])
    c.equal(p.returncode, 0, "transform csv --leaks exit code on the killed capture")
    c.check("incomplete" in p.stderr and "checkpoint" in p.stderr,
            "the report warns that it shows the last checkpoint")
    if p.returncode == 0:
        c.equal(csv_total(csv_out), leaked, "csv --leaks total = the last checkpoint's leaks")
    p = mrtest.run([memray, "transform", "csv", "-f", "-o", csv_out, capture])
    if p.returncode == 0:
        c.equal(csv_total(csv_out), at_peak, "csv total = the last checkpoint's high-water mark")
    p = mrtest.run([memray, "flamegraph", "-f", "-o", os.path.join(work, "k.html"), capture])
    c.equal(p.returncode, 0, "flamegraph exit code on the killed capture")


def csv_total(path):
    import csv
    with open(path) as f:
        rows = list(csv.DictReader(f))
    key = next(k for k in rows[0] if "size" in k.lower()) if rows else None
    return sum(int(r[key]) for r in rows) if rows else 0


def fields(line):
    out = {}
    for part in line.split()[1:]:
        k, _, v = part.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def refusals(c, memray, target, work):
    capture = os.path.join(work, "agg.bin")
    p = mrtest.run([memray, "run", "--aggregate", "-o", capture, "--", target])
    if not c.equal(p.returncode, 0, "--aggregate run exit code"):
        c.finish()
    temporary = "Can't find temporary allocations using a pre-aggregated capture file."
    history = "Can't get allocation history using a pre-aggregated capture file."
    cases = [
        (["stats", capture], "Can't compute statistics using a pre-aggregated capture file."),
        (["flamegraph", "-f", "-o", os.path.join(work, "t.html"), "--temporal", capture], history),
        (["flamegraph", "-f", "-o", os.path.join(work, "t.html"), "--temporary-allocations",
          capture], temporary),
        (["table", "-f", "-o", os.path.join(work, "t.html"), "--temporary-allocation-threshold",
          "3", capture], temporary),
        (["tree", "--temporary-allocations", capture], temporary),
        (["summary", "--temporary-allocations", capture], temporary),
        (["transform", "csv", "-f", "-o", os.path.join(work, "t.csv"), "--temporary-allocations",
          capture], temporary),
    ]
    for args, message in cases:
        p = mrtest.run([memray, *args])
        c.equal(p.returncode, 1, "%s: exit code" % " ".join(args[:2]))
        c.check(mrtest.one_error_line(p) and message in p.stderr,
                "%s: one error line with memray's message" % " ".join(args[:2]))


def main():
    memray, mode = sys.argv[1:3]
    work = mrtest.scratch_dir("agg")
    c = mrtest.Checker("aggregate-" + mode)
    if mode == "compare-native":
        target = sys.argv[3]
        compare(c, memray, work,
                lambda out, extra: mrtest.memray_run(memray, out, [target], extra=extra))
    elif mode == "compare-python":
        version, script = sys.argv[3:5]
        python = pythons.find(version)
        if python is None:
            mrtest.skip(pythons.missing_reason(version))
        compare(c, memray, work,
                lambda out, extra: mrtest.memray_run(memray, out, [script], python=python,
                                                     extra=extra, env=DETERMINISTIC_ENV))
    elif mode == "kill":
        kill_mid_run(c, memray, sys.argv[3], work)
    elif mode == "refusals":
        refusals(c, memray, sys.argv[3], work)
    else:
        sys.exit("unknown mode " + mode)
    c.finish()


if __name__ == "__main__":
    main()
