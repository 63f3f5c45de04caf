"""`memray run --compress-on-exit` (memray's default, spelled out) and `--no-compress`: the same
meaning as in `memray attach` (test/attach/test_options.py): lz4 blocks or raw blocks, told apart
by the header's compressed flag, and both captures hold the same allocations. A compressed
capture stores raw the blocks of 16 KiB or more that lz4 cannot shrink by a fifth (a native
churn of random sizes and addresses, targets/random_churn.c), retrying lz4 every 16th block, and
still holds every allocation.

usage: test_compress_flags.py MEMRAY FORK_TARGET RANDOM_CHURN
"""

import os
import re
import sys

import mrtest

k_flag_compressed = 1 << 3  # format::k_flag_compressed (src/format/records.hpp)


def main():
    memray, program, churn = sys.argv[1:4]
    work = mrtest.scratch_dir("compress")
    c = mrtest.Checker("compress-flags")
    for extra, compressed in (([], True), (["--compress-on-exit"], True),
                              (["--no-compress"], False)):
        out = os.path.join(work, "c%d.bin" % len(os.listdir(work)))
        p = mrtest.memray_run(memray, out, [program], extra=extra)
        what = "run %s" % (extra[0] if extra else "(default)")
        c.equal(p.returncode, 0, what + ": exit code")
        expect, _ = mrtest.parse_expectations(p.stdout)
        p, cap = mrtest.parse_capture(memray, out)
        m = re.search(r"^HEADER .*\bflags=0x([0-9a-f]+)", p.stdout, re.M)
        if not c.check(cap is not None and m is not None, what + ": capture parses"):
            continue
        c.equal(bool(int(m.group(1), 16) & k_flag_compressed), compressed,
                what + ": compressed flag")
        c.check(cap.trailer is not None, what + ": finalized")
        for _, kind, size, count in expect:
            got = sum(1 for e in cap.events if e["kind"] == kind and e["size"] == size)
            c.equal(got, count, "%s: %s of %d bytes" % (what, kind, size))
    # Incompressible blocks: mostly raw, lz4 retried (and again not kept) every 16th block.
    n = 400000
    for extra, compressed in (([], True), (["--no-compress"], False)):
        out = os.path.join(work, "churn%d.bin" % len(os.listdir(work)))
        run = mrtest.memray_run(memray, out, [churn, str(n)], extra=extra)
        what = "random churn %s" % (extra[0] if extra else "(default)")
        c.equal(run.returncode, 0, what + ": exit code")
        p, cap = mrtest.parse_capture(memray, out)
        blocks = re.findall(r"^BLOCK offset=\d+ codec=(\w+) raw_len=(\d+) stored_len=(\d+)",
                            p.stdout, re.M)
        if not c.check(cap is not None and cap.trailer is not None and len(blocks) > 20,
                       what + ": a finalized capture of many blocks (%d)" % len(blocks)):
            continue
        # Every malloc of the run is the workload's, and it prints their total size.
        mallocs = [e["size"] for e in cap.events if e["kind"] == "MALLOC"]
        c.equal(len(mallocs), n, what + ": every malloc")
        total = re.search(r"^allocations \d+ bytes (\d+)$", run.stdout, re.M)
        c.equal(sum(mallocs), int(total.group(1)) if total else None,
                what + ": the mallocs' total size")
        codecs = "".join("z" if codec == "lz4" else "r" for codec, _, _ in blocks)
        if compressed:
            c.check("rrrrrrrr" in codecs, what + ": incompressible blocks stored raw: " + codecs)
            # The writer's rule, replayed: a block of at least 16 KiB (a quarter of the 64 KiB
            # target; smaller ones say little) that lz4 shrinks by less than a fifth, or not at
            # all (then it is stored raw too), makes the next 15 go raw without a try. Those must
            # be raw, and lz4 must win again after raw blocks (it is tried again).
            left, forced_raw = 0, True
            for codec, raw, stored in blocks:
                if left > 0:
                    forced_raw = forced_raw and codec != "lz4"
                    left -= 1
                elif int(raw) >= 16384 and (codec != "lz4" or
                                            int(stored) > int(raw) - int(raw) // 5):
                    left = 15
            c.check(forced_raw and "z" in codecs[codecs.find("r"):],
                    what + ": lz4 tried again every 16th block: " + codecs)
            c.check(all(int(stored) <= int(raw) for _, raw, stored in blocks),
                    what + ": no block grows")
        else:
            c.equal(codecs, "r" * len(blocks), what + ": every block raw")
    p = mrtest.run([memray, "run", "--compress-on-exit", "--no-compress", "-o",
                    os.path.join(work, "both.bin"), "--", program])
    c.equal(p.returncode, 2, "run --compress-on-exit --no-compress is refused")
    c.check(not os.path.exists(os.path.join(work, "both.bin")), "refused: no capture")
    c.finish()


if __name__ == "__main__":
    main()
