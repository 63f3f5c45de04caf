"""The native stack walker against libunwind on every allocation of a program that allocates from
every awkward kind of stack (targets/unwind_cases.cpp): recursion, rbp-addressed frames, C++
exceptions, longjmp, a signal handler on an alternate stack, a ucontext coroutine, threads, a
library loaded and unloaded twenty times, a call whose inner frames sit where an earlier
call's did, above stale copies of that call's return addresses, so that only a saved rbp tells
the walker its previous walk does not hold (stale_frames), and one callee called from two call
sites in turn, so that the walker's first attempt to reuse its previous walk fails and a later
one, further out, must succeed (two_sites). With MEMRAY_STACK_CHECK=abort any
stack that differs aborts the program; the payload's report line says how many were compared and
how many the walker left to libunwind (the signal handler's: a signal frame is not a simple rule).
Then the same run with MEMRAY_FAST_UNWIND=0 must record the same stacks: the same multiset of
(allocator, size, native frames as object + offset), which does not depend on how the threads
interleaved or where the objects were loaded.

usage: test_unwind_cases.py MEMRAY UNWIND_CASES LIBRARY
"""

import collections
import os
import re
import sys

import mrtest

ROUNDS = 3


def main():
    memray, program, library = sys.argv[1:4]
    work = mrtest.scratch_dir("unwind")
    c = mrtest.Checker("unwind-cases")
    plain = mrtest.run([program, library, str(ROUNDS)])
    if plain.returncode != 0:
        print("target fails on its own; cannot test it")
        sys.exit(1)

    fast = os.path.join(work, "fast.bin")
    p = mrtest.memray_run(memray, fast, [program, library, str(ROUNDS)],
                          env={"MEMRAY_STACK_CHECK": "abort", "MEMRAY_LOG_LEVEL": "1"})
    c.equal(p.returncode, 0, "memray run exit code (a stack that differs aborts the target)")
    done = [line for line in p.stdout.splitlines() if line.startswith("done ")]
    c.equal(done, [line for line in plain.stdout.splitlines() if line.startswith("done ")],
            "the target did all its work")
    aligned = re.search(r"^stale frames aligned (\d+)$", p.stdout, re.M)
    c.check(aligned is not None and int(aligned.group(1)) > 0,
            "the stale-frames case lined its frames up (%s; 0 means this compiler laid the "
            "frames out otherwise and the case tests nothing)"
            % (aligned.group(1) if aligned else "no count printed"))
    m = re.search(r"stack check: (\d+) native stacks compared with libunwind, (\d+) differed, "
                  r"(\d+) left to libunwind, (\d+) took frames over after a failed attempt",
                  p.stderr)
    if not c.check(m is not None, "the payload reported its stack check"):
        c.finish()
    compared, differed, left, resumed = (int(x) for x in m.groups())
    # two_sites() makes such walks on every second call; a walker that gives up after a failed
    # attempt makes none, and these cases would not test the attempts that follow one.
    c.check(resumed >= 20 * ROUNDS,
            "walks that took frames over after a failed attempt: %d" % resumed)
    c.equal(differed, 0, "stacks that differ from libunwind")
    c.check(compared > 5000, "stacks compared: %d" % compared)
    # The signal handler's allocations (20 a round) cannot be walked without libunwind (a signal
    # frame), nor the coroutine's (its outermost frame's caller is on another stack); nearly
    # everything else must be.
    c.check(left >= 20 * ROUNDS, "the walker left the signal frames to libunwind (%d)" % left)
    c.check(left < compared // 20,
            "the walker did the rest itself (%d of %d left)" % (left, compared))

    slow = os.path.join(work, "slow.bin")
    p = mrtest.memray_run(memray, slow, [program, library, str(ROUNDS)],
                          env={"MEMRAY_FAST_UNWIND": "0"})
    c.equal(p.returncode, 0, "memray run with libunwind only")
    stacks = []
    for capture in (fast, slow):
        r, cap = mrtest.parse_capture(memray, capture)
        if not c.check(cap is not None, "parse of %s" % os.path.basename(capture)):
            c.finish()
        stacks.append(stack_multiset(cap, os.path.basename(library)))
    c.check(sum(stacks[0].values()) > 5000, "allocations with stacks: %d" % sum(stacks[0].values()))
    missing = stacks[1] - stacks[0]
    extra = stacks[0] - stacks[1]
    c.check(not missing and not extra,
            "the walker's stacks equal libunwind's (%d differ, e.g. %s)"
            % (sum((missing + extra).values()), next(iter(missing or extra), None)))
    c.finish()


def stack_multiset(cap, library):
    """Counter of (allocator, size, ((object, offset), ...) innermost first) over allocations.
    Frames in the dlopen'ed library count as one (library, 0): a capture may lack its mappings
    when it was loaded and unloaded between two of the writer's passes."""
    def key(path, offset):
        name = os.path.basename(path) if path else library
        return (name, offset) if name != library else (library, 0)

    counts = collections.Counter()
    for e in cap.events:
        if e["node"]:
            frames = tuple(key(p, off) for p, off in cap.native_frames(e["node"]))
            counts[(e["kind"], e["size"], frames)] += 1
    return counts

if __name__ == "__main__":
    main()
