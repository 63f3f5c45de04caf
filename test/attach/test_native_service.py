"""Attach to a running native service (C, threads blocked in read()), drive known requests
between attach and detach, and check the capture: exact counts and bytes per function and per
thread, leaks computed from `memray parse`, frames that were running before attach in the
stacks. Then attach again (a new capture with only the later allocations) and attach with
--duration (the command waits, detaches and says where the capture is).

usage: test_native_service.py MEMRAY NATIVE_SERVICE
"""

import collections
import os
import re
import subprocess
import sys
import time

import attachtest as at
import mrtest


def sizes_of(target):
    line = target.expect(r"^SIZES ")
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line or "")}


def analyse(c, cap, exe, symbols, sizes, expected, tag):
    """expected: {(function, thread_name_or_MAIN): (kind, size, count, leaked)}"""
    distinct = set(sizes.values())
    by_key = collections.defaultdict(list)
    for e in at.allocations(cap):
        if e["size"] not in distinct:
            continue
        frames = at.exe_functions(cap, e["node"], exe, symbols)
        func = frames[0] if frames else "?"
        name = cap.thread_name(e["thread"])
        thread = name if name.startswith("svc-") else "MAIN"
        by_key[(func, thread)].append((e, frames))
    leaked = {id(e) for e in at.live_at_end(cap)}  # addresses get reused: match the events
    for (func, thread), (kind, size, count, n_leaked) in sorted(expected.items()):
        got = by_key.pop((func, thread), [])
        c.equal(len(got), count, "%s: allocations in %s on %s" % (tag, func, thread))
        c.equal(sorted({e["kind"] for e, _ in got}), [kind] if count else [],
                "%s: allocator of %s" % (tag, func))
        c.equal(sum(e["size"] for e, _ in got), count * size,
                "%s: bytes allocated in %s on %s" % (tag, func, thread))
        leak_bytes = sum(e["size"] for e, _ in got if id(e) in leaked)
        c.equal(leak_bytes, n_leaked * size, "%s: bytes leaked by %s on %s" % (tag, func, thread))
        # Frames that were already on the stack when attach happened.
        caller = "worker_loop" if thread != "MAIN" else "main"
        missing = [frames for _, frames in got if caller not in frames]
        c.check(not missing, "%s: %s's stacks pass through %s (first bad: %r)"
                % (tag, func, caller, missing[:1]))
    c.equal({k: len(v) for k, v in by_key.items()}, {},
            "%s: no distinctive allocation elsewhere" % tag)
    # The leak total over the distinctive sizes, independent of the stack attribution.
    total = sum(e["size"] for e in at.live_at_end(cap) if e["size"] in distinct)
    want = sum(size * n for (_, _), (_, size, _, n) in expected.items())
    c.equal(total, want, "%s: leaked bytes of the service's sizes" % tag)


def main():
    memray, exe = sys.argv[1:3]
    at.require_attach(memray)
    c = mrtest.Checker("attach-native-service")
    work = mrtest.scratch_dir("at-native")
    symbols = at.Symbols(exe)
    for fn in ("leak_alpha", "leak_beta", "leak_main", "temp_work", "worker_loop", "main"):
        if not any(name == fn for _, _, name in symbols.entries):
            mrtest.skip("nm does not list %s in %s" % (fn, exe))

    t = at.Target([exe])
    sizes = sizes_of(t)
    if not c.check(t.expect(r"^ready ") is not None and len(sizes) == 4, "target ready"):
        t.kill()
        c.finish()
    # Before attach: none of this may show up in any capture.
    c.check(t.request("a 3", r"^done a 3") is not None, "pre-attach requests served")
    c.check(t.request("m 2", r"^done m 2") is not None, "pre-attach main leaks")

    # --- 1. attach, known requests, detach.
    cap1 = os.path.join(work, "first.bin")
    p = at.attach(memray, t.pid, cap1, extra=["--native"])
    if not at.check_attached(c, p, "attach"):
        t.kill()
        c.finish()
    c.check(t.running(), "target running after attach")
    k_a, k_b, k_m = 5, 4, 3
    c.check(t.request("a %d" % k_a, r"^done a ") is not None, "requests on svc-alpha")
    c.check(t.request("b %d" % k_b, r"^done b ") is not None, "requests on svc-beta")
    c.check(t.request("m %d" % k_m, r"^done m ") is not None, "leaks on the main thread")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, cap1, "detach")
    c.check(t.running(), "target running after detach")
    c.check(t.request("ping", r"^pong") is not None, "target answers after detach")
    # After detach: not recorded.
    c.check(t.request("a 2", r"^done a 2") is not None, "post-detach requests served")

    if c.check(os.path.exists(cap1), "first capture written"):
        size1 = os.path.getsize(cap1)
        p, cap = mrtest.parse_capture(memray, cap1)
        c.equal(p.returncode, 0, "parse first capture")
        if cap is not None:
            analyse(c, cap, exe, symbols, sizes, {
                ("leak_alpha", "svc-alpha"): ("MALLOC", sizes["alpha"], k_a, k_a),
                ("temp_work", "svc-alpha"): ("MALLOC", sizes["temp"], k_a, 0),
                ("leak_beta", "svc-beta"): ("CALLOC", sizes["beta"], k_b, k_b),
                ("leak_main", "MAIN"): ("MALLOC", sizes["main"], k_m, k_m),
            }, "first")
            names = sorted(cap.thread_name(e["thread"]) for e in at.allocations(cap)
                           if e["size"] in (sizes["alpha"], sizes["beta"]))
            c.check(set(names) == {"svc-alpha", "svc-beta"},
                    "first: worker threads recorded with their names (%r)" % sorted(set(names)))
        p, data = mrtest.stats_json(memray, cap1, work)
        c.equal(p.returncode, 0, "stats --json on the first capture")

    # --- 2. attach again: a new file with only the later allocations.
    cap2 = os.path.join(work, "second.bin")
    p = at.attach(memray, t.pid, cap2, extra=["--native"])
    at.check_attached(c, p, "second attach")
    c.check(t.request("a 2", r"^done a ") is not None, "second: svc-alpha requests")
    c.check(t.request("b 1", r"^done b ") is not None, "second: svc-beta request")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, cap2, "second detach")
    if os.path.exists(cap1):
        c.equal(os.path.getsize(cap1), size1, "first capture untouched by the second session")
    if c.check(os.path.exists(cap2), "second capture written"):
        p, cap = mrtest.parse_capture(memray, cap2)
        c.equal(p.returncode, 0, "parse second capture")
        if cap is not None:
            analyse(c, cap, exe, symbols, sizes, {
                ("leak_alpha", "svc-alpha"): ("MALLOC", sizes["alpha"], 2, 2),
                ("temp_work", "svc-alpha"): ("MALLOC", sizes["temp"], 2, 0),
                ("leak_beta", "svc-beta"): ("CALLOC", sizes["beta"], 1, 1),
                ("leak_main", "MAIN"): ("MALLOC", sizes["main"], 0, 0),
            }, "second")

    # --- 3. --duration: the command waits, detaches by itself, says where the capture is.
    cap3 = os.path.join(work, "timed.bin")
    cmd = [memray, "attach", "-o", cap3, "--native", "--duration", "3", str(t.pid)]
    print("$ " + " ".join(cmd))
    started = time.monotonic()
    cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = cli.stdout.readline().decode(errors="replace").strip()
    print("  first line after %.3fs: %s" % (time.monotonic() - started, first))
    c.check(bool(first) and cli.poll() is None,
            "--duration: a line once tracking is active, printed (flushed) before waiting")
    c.check(t.request("m 4", r"^done m ") is not None, "--duration: main leaks while tracked")
    try:
        rest, err = cli.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        cli.kill()
        rest, err = cli.communicate()
    rest, err = rest.decode(errors="replace"), err.decode(errors="replace")
    print("  exit %d after %.3fs\n  stdout: %s\n  stderr: %s"
          % (cli.returncode, time.monotonic() - started, rest, err))
    c.equal(cli.returncode, 0, "--duration: exit code")
    c.check(time.monotonic() - started >= 3.0, "--duration: the command waited 3 s")
    c.check(os.path.basename(cap3) in rest, "--duration: says where the capture is")
    c.check(re.search(r"\b\d+ allocations\b", rest) is not None,
            "--duration: one-line summary with the allocation count")
    at.wait_untraced(t.pid)
    if c.check(os.path.exists(cap3), "--duration capture written"):
        p, cap = mrtest.parse_capture(memray, cap3)
        if c.equal(p.returncode, 0, "parse --duration capture") and cap is not None:
            analyse(c, cap, exe, symbols, sizes, {
                ("leak_alpha", "svc-alpha"): ("MALLOC", sizes["alpha"], 0, 0),
                ("temp_work", "svc-alpha"): ("MALLOC", sizes["temp"], 0, 0),
                ("leak_beta", "svc-beta"): ("CALLOC", sizes["beta"], 0, 0),
                ("leak_main", "MAIN"): ("MALLOC", sizes["main"], 4, 4),
            }, "timed")
    p = at.detach(memray, t.pid)
    c.equal(p.returncode, 1, "detach after --duration: nothing attached any more")

    c.check(t.running(), "target still running at the end")
    c.equal(t.finish(), 0, "target exit code (a worker that saw EINTR would exit 2)")
    c.finish()


if __name__ == "__main__":
    main()
