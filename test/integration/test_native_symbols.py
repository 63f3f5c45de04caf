"""Symbolised native stacks of a -g -O2 program whose allocation is in an inlined function
(targets/native_inline.c), under `memray run --native`.

usage: test_native_symbols.py MEMRAY inline PROGRAM SOURCE
       test_native_symbols.py MEMRAY moved PROGRAM SOURCE OTHER_BUILD
  inline: the stack of the distinctive allocations reads grab_buffer (inlined) at the malloc
          line, fill_slots at the call line, main at its call line, innermost first; counts and
          bytes exact.
  moved:  a scratch copy of PROGRAM is captured, then renamed away; reports with --debug-dir
          holding a copy (and with --sysroot) show the same frames as before the move; without
          them the program's frames are `native_inline+0x...` with a "not found" warning; with
          --debug-dir holding OTHER_BUILD (same source, another -D, another build-id) a
          build-id mismatch warning and `native_inline+0x...` frames, never names.
Expected lines come from the /* ALLOC_SITE */, /* CALL_SITE */, /* MAIN_SITE */ markers.
"""

import os
import re
import shutil
import sys

import mrtest
import nativetest as nt

INLINED = "grab_buffer"
CALLER = "fill_slots"


def program_facts(c, program, source):
    """The announced allocation, the expected innermost frames, and the inlining check."""
    plain = mrtest.run([program])
    if plain.returncode != 0:
        print("target fails on its own; cannot test it")
        sys.exit(1)
    expect, _ = mrtest.parse_expectations(plain.stdout)
    if not c.equal(len(expect), 1, "target announced one distinctive allocation"):
        c.finish()
    _, kind, size, count = expect[0]
    marks = nt.marker_lines(source)
    frames = [(INLINED, source, marks["ALLOC_SITE"]), (CALLER, source, marks["CALL_SITE"]),
              ("main", source, marks["MAIN_SITE"])]
    # Without real inlining the test would prove nothing about inlined frames.
    funcs = nt.defined_functions(program)
    c.check(CALLER in funcs and "main" in funcs, "nm: %s and main are symbols" % CALLER)
    if not c.check(not any(f == INLINED or f.startswith(INLINED + ".") for f in funcs),
                   "nm: %s has no symbol of its own (the compiler inlined it)" % INLINED):
        c.finish()
    return kind, size, count, frames


def capture_native(c, memray, program, work, name):
    capture = os.path.join(work, name + ".bin")
    p = mrtest.memray_run(memray, capture, [program], native=True)
    c.equal(p.returncode, 0, "memray run --native exit code")
    if not c.check(os.path.exists(capture), "capture written"):
        c.finish()
    return capture


def distinctive_row(c, rows, kind, size, count, what):
    """The one leaks row of the distinctive allocations, checked for exact count and bytes."""
    mine = nt.rows_of_size(rows, size)
    if not c.equal(len(mine), 1, "%s: one location allocates %d-byte blocks" % (what, size)):
        return None
    r = mine[0]
    c.equal((r.allocator, r.count, r.size), (kind, count, count * size),
            "%s: allocator, count and bytes of that location" % what)
    return r


def check_frames(c, frames, expected, what):
    got = frames[:len(expected)]
    ok = len(got) == len(expected) and all(nt.frame_matches(g, *e) for g, e in zip(got, expected))
    c.check(ok, "%s: innermost frames\n       expected %s\n       got      %s"
            % (what, nt.show(expected), nt.show(frames)))
    return ok


def inline_test(memray, program, source):
    c = mrtest.Checker("native-inline")
    kind, size, count, expected = program_facts(c, program, source)
    work = mrtest.scratch_dir("ninl")
    capture = capture_native(c, memray, program, work, "inline")

    # The raw capture: every distinctive malloc recorded with a native stack.
    p, cap = mrtest.parse_capture(memray, capture)
    if c.equal(p.returncode, 0, "parse exit code") and cap is not None:
        mine = [e for e in cap.events if e["size"] == size and e["kind"] == kind]
        c.equal(len(mine), count, "parse: %s events of %d bytes" % (kind, size))
        c.check(all(cap.native_depth(e["node"]) >= 3 for e in mine),
                "parse: each has a native stack of >= 3 frames")

    p, rows = nt.csv_rows(memray, capture, work)
    if c.equal(p.returncode, 0, "transform csv --leaks exit code") and rows is not None:
        r = distinctive_row(c, rows, kind, size, count, "csv")
        if r is not None:
            check_frames(c, r.frames, expected, "csv")
    c.finish()


def moved_test(memray, program, source, other_build):
    c = mrtest.Checker("native-moved")
    kind, size, count, expected = program_facts(c, program, source)
    name = os.path.basename(program)
    work = mrtest.scratch_dir("nmov")
    app, dbg, other, root, empty = (os.path.join(work, d)
                                    for d in ("app", "dbg", "other", "root", "empty"))
    for d in (app, dbg, other, empty):
        os.mkdir(d)
    # Scratch copies only: the build tree's files are never moved.
    moved = os.path.join(app, name)
    shutil.copy2(program, moved)
    shutil.copy2(program, os.path.join(dbg, name))
    shutil.copy2(other_build, os.path.join(other, name))
    in_root = os.path.join(root, moved.lstrip("/"))
    os.makedirs(os.path.dirname(in_root))
    shutil.copy2(program, in_root)
    ours, theirs = nt.build_id(program), nt.build_id(other_build)
    if not c.check(ours and theirs and ours != theirs,
                   "the two builds have different build-ids (%s, %s)" % (ours, theirs)):
        c.finish()

    capture = capture_native(c, memray, moved, work, "moved")
    p, rows = nt.csv_rows(memray, capture, work)
    before = None
    if c.equal(p.returncode, 0, "before the move: csv exit code") and rows is not None:
        r = distinctive_row(c, rows, kind, size, count, "before the move")
        if r is not None and check_frames(c, r.frames, expected, "before the move"):
            before = r.frames

    os.rename(moved, moved + ".away")
    c.check(not os.path.exists(moved), "the captured binary's path no longer exists")

    for tag, extra in (("--debug-dir with a copy", ["--debug-dir", dbg]),
                       ("--debug-dir twice (copy in the second)", ["--debug-dir", empty,
                                                                  "--debug-dir", dbg]),
                       ("--sysroot with a copy", ["--sysroot", root])):
        p, rows = nt.csv_rows(memray, capture, work, extra=extra)
        if not c.equal(p.returncode, 0, "%s: csv exit code" % tag) or rows is None:
            continue
        r = distinctive_row(c, rows, kind, size, count, tag)
        if r is not None:
            check_frames(c, r.frames, expected, tag)
            if before is not None:
                c.check(r.frames == before, "%s: the whole stack as before the move\n"
                        "       before %s\n       after  %s"
                        % (tag, nt.show(before, 20), nt.show(r.frames, 20)))
        c.equal([l for l in nt.warning_lines(p.stderr) if moved in l], [],
                "%s: no warning about the program" % tag)

    def unsymbolised(tag, r):
        """The program's frames are name+0x..., never a function name or a source line."""
        funcs = [f for f, _, _ in r.frames]
        c.check(nt.fallback_name(funcs[0], name) if funcs else False,
                "%s: innermost frame %r is %s+0x..." % (tag, funcs[:1], name))
        wrong = [f for f in r.frames if f[0] in (INLINED, CALLER, "main")
                 or nt.same_file(f[1], source)]
        c.equal(wrong, [], "%s: no frame named from the program's symbols or lines" % tag)
        c.check(sum(nt.fallback_name(f, name) for f in funcs) >= 2,
                "%s: >= 2 frames %s+0x... (%s)" % (tag, name, nt.show(r.frames)))

    # Nothing to read: name+0x... and a "not found" warning naming the path.
    p, rows = nt.csv_rows(memray, capture, work)
    if c.equal(p.returncode, 0, "without --debug-dir: csv exit code") and rows is not None:
        r = distinctive_row(c, rows, kind, size, count, "without --debug-dir")
        if r is not None:
            unsymbolised("without --debug-dir", r)
        warn = [l for l in nt.warning_lines(p.stderr) if moved in l]
        c.check(len(warn) == 1 and "not found" in warn[0],
                "without --debug-dir: one 'not found' warning about %s (got %r)" % (moved, warn))

    # Another build of the same source: the mismatch is reported, the file is not used.
    p, rows = nt.csv_rows(memray, capture, work, extra=["--debug-dir", other])
    if c.equal(p.returncode, 0, "other build: csv exit code") and rows is not None:
        r = distinctive_row(c, rows, kind, size, count, "other build")
        if r is not None:
            unsymbolised("other build", r)
        warn = [l for l in nt.warning_lines(p.stderr) if moved in l]
        # Besides the mismatch, a "not found" line (no usable file in the end) is fine.
        c.equal([l for l in warn if "build-id" not in l and "not found" not in l], [],
                "other build: no other warning about the program")
        warn = [l for l in warn if "build-id" in l]
        pattern = (r"memray: warning: %s: build-id ([0-9a-f]+)(?:\.\.\.)? of the capture does "
                   r"not match %s \(([0-9a-f]+)(?:\.\.\.)?\); not used"
                   % (re.escape(moved), re.escape(os.path.join(other, name))))
        m = re.fullmatch(pattern, warn[0]) if len(warn) == 1 else None
        if c.check(m is not None, "other build: one mismatch warning (got %r)" % warn):
            c.check(len(m.group(1)) >= 8 and ours.startswith(m.group(1)),
                    "other build: the capture's build-id %s is the program's %s"
                    % (m.group(1), ours))
            c.check(len(m.group(2)) >= 8 and theirs.startswith(m.group(2)),
                    "other build: the file's build-id %s is the other build's %s"
                    % (m.group(2), theirs))

    # Every reporter takes the options: names from the copy, the mismatch from the other build.
    for reporter in ("summary", "stats", "tree", "flamegraph", "table"):
        out = os.path.join(work, reporter + ".html")
        args = ["-f", "-o", out] if reporter in ("flamegraph", "table") else []
        for tag, dirs in (("copy", dbg), ("other build", other)):
            p = mrtest.run([memray, reporter, *args, "--debug-dir", dirs, capture])
            if not c.equal(p.returncode, 0, "%s --debug-dir (%s): exit code" % (reporter, tag)):
                continue
            text = p.stdout
            if args and os.path.exists(out):
                with open(out, errors="replace") as f:
                    text = f.read()
                os.unlink(out)
            warn = [l for l in nt.warning_lines(p.stderr) if moved in l and "build-id" in l]
            if tag == "copy":
                c.check(INLINED in text and not warn,
                        "%s --debug-dir (copy): names %s, no build-id warning" % (reporter, INLINED))
            else:
                c.check(INLINED not in text and CALLER not in text and len(warn) == 1,
                        "%s --debug-dir (other build): no names from it, one build-id warning "
                        "(got %r)" % (reporter, warn))
    c.finish()


def main():
    memray, mode, program, source, *rest = sys.argv[1:]
    nt.require_tools("nm", "readelf")
    if mode == "inline":
        inline_test(memray, program, source)
    elif mode == "moved":
        moved_test(memray, program, source, rest[0])
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
