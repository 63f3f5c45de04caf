"""Native programs under `memray run -- prog`: exact counts of distinctive requests per allocator
kind and per thread name, as announced by the target on stdout ("EXPECT thread KIND size count").

usage: test_native.py MEMRAY MODE PROGRAM [ARGS...]   (an ARG ending in .so is a library the
  program dlopen()s: the distinctive allocations' stacks must pass through it)
  MODE threads  : thread names must match (EXPECT's thread field; MAIN = any other thread)
  MODE plain    : only counts and kinds (single-threaded targets)
"""

import collections
import os
import sys

import mrtest


def main():
    memray, mode, program, *args = sys.argv[1:]
    name = os.path.basename(program)
    work = mrtest.scratch_dir(name)
    capture = os.path.join(work, name + ".bin")
    c = mrtest.Checker("native-" + name)

    plain = mrtest.run([program, *args])
    if plain.returncode != 0:
        print("target fails on its own; cannot test it")
        sys.exit(1)
    expect, _ = mrtest.parse_expectations(plain.stdout)
    c.check(len(expect) > 0, "target announced its allocations")

    p = mrtest.memray_run(memray, capture, [program, *args])
    c.equal(p.returncode, 0, "memray run exit code")
    traced_expect, _ = mrtest.parse_expectations(p.stdout)
    c.equal(traced_expect, expect, "target output identical under memray")
    if not c.check(os.path.exists(capture), "capture file written"):
        c.finish()

    p, cap = mrtest.parse_capture(memray, capture)
    c.equal(p.returncode, 0, "parse exit code")
    if cap is None:
        c.finish()

    sizes = {size for _, _, size, _ in expect}
    seen = collections.Counter()
    for e in cap.events:
        if e["size"] in sizes and e["kind"] != "FREE":
            seen[(e["thread"], e["kind"], e["size"])] += 1

    named = {t for t, _, _, _ in expect if t != "MAIN"}
    thread_ids = {}
    for tid, info in cap.threads.items():
        if info["name"] in named:
            thread_ids.setdefault(info["name"], set()).add(tid)
    if mode == "threads":
        for t in sorted(named):
            c.equal(len(thread_ids.get(t, ())), 1, "thread named %r recorded once" % t)

    wanted = collections.Counter()
    for thread, kind, size, count in expect:
        wanted[(thread, kind, size)] += count
    for (thread, kind, size), count in sorted(wanted.items()):
        got_total = sum(n for (t, k, s), n in seen.items() if k == kind and s == size)
        c.equal(got_total, count, "%s events of %d bytes" % (kind, size))
        if mode == "threads":
            if thread == "MAIN":
                got = sum(n for (t, k, s), n in seen.items()
                          if k == kind and s == size and cap.thread_name(t) not in named)
            else:
                got = sum(n for (t, k, s), n in seen.items()
                          if k == kind and s == size and cap.thread_name(t) == thread)
            c.equal(got, count, "%s events of %d bytes on thread %s" % (kind, size, thread))

    # Every distinctive heap allocation is freed once by the target: the FREE must be recorded.
    heap_kinds = {"MALLOC", "CALLOC", "REALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN",
                  "VALLOC", "PVALLOC"}
    live = {}
    unmatched_frees = 0
    for e in cap.events:
        if e["kind"] in heap_kinds:
            live[e["address"]] = e["size"]
        elif e["kind"] == "FREE":
            live.pop(e["address"], None)
    still = sorted(s for s in live.values() if s in sizes)
    c.equal(still, [], "distinctive allocations all freed in the capture")

    # Native stacks are always recorded for non-Python programs.
    distinct = [e for e in cap.events if e["size"] in sizes and e["kind"] in heap_kinds]
    shallow = [e for e in distinct if cap.native_depth(e["node"]) < 2]
    c.equal(len(shallow), 0, "distinctive allocations have native stacks (>= 2 frames)")
    # The stack goes through the program (and, for the dlopen test, through the library that
    # was loaded after tracking started): checked against the capture's loaded-object records.
    must = [os.path.realpath(program)] + [os.path.realpath(a) for a in args if a.endswith(".so")]
    for e in distinct[:20]:
        objs = {os.path.realpath(p) for p in cap.native_objects(e["node"]) if p}
        for path in must:
            c.check(path in objs, "stack of %s %d passes through %s"
                    % (e["kind"], e["size"], os.path.basename(path)))
    c.finish()


if __name__ == "__main__":
    main()
