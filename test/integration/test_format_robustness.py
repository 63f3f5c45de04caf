"""Format robustness at the CLI level: a real capture cut at many byte offsets, and with bytes
flipped, must give either a working report or one clear error line, never a crash.

usage: test_format_robustness.py MEMRAY PROGRAM [ARGS...]
"""

import os
import random
import sys

import mrtest


def main():
    memray, program, *args = sys.argv[1:]
    work = mrtest.scratch_dir("robust")
    c = mrtest.Checker("format-robustness")
    results = {}
    for compress in (True, False):
        capture = os.path.join(work, "real-%s.bin" % ("lz4" if compress else "raw"))
        extra = () if compress else ("--no-compress",)
        p = mrtest.memray_run(memray, capture, [program, *args], extra=extra)
        # busy_output exits 7 on its own; memray run passes that through.
        if not c.check(p.returncode == 7 and os.path.exists(capture), "made a real capture"):
            continue
        data = open(capture, "rb").read()
        size = len(data)
        print("capture %s: %d bytes" % (capture, size))
        p = mrtest.run([memray, "stats", capture])
        c.equal(p.returncode, 0, "stats of the intact capture")

        rng = random.Random(1234 + compress)
        offsets = sorted({0, 1, 7, 8, 12, 16, 17, 20, 40, size // 4, size // 2, size - 1, size - 17,
                          *(rng.randrange(1, size) for _ in range(12))})
        offsets = [o for o in offsets if 0 <= o < size]
        cut = os.path.join(work, "cut.bin")
        for off in offsets:
            with open(cut, "wb") as f:
                f.write(data[:off])
            for cmd in (["stats"], ["summary"], ["parse"]):
                p = mrtest.run([memray, *cmd, cut], timeout=60)
                what = "%s of capture cut at %d/%d" % (cmd[0], off, size)
                c.check(not mrtest.crashed(p), what + ": no crash")
                c.check(p.returncode == 0 or mrtest.one_error_line(p),
                        what + ": works or one error line")
                results.setdefault(cmd[0], []).append(p.returncode)
                if off > size // 2 and cmd[0] == "stats":
                    # Past the header and the first blocks, the readable part must still be read.
                    c.equal(p.returncode, 0, what + ": still readable")

        flipped = os.path.join(work, "flipped.bin")
        for trial in range(16):
            b = bytearray(data)
            pos = rng.randrange(0, size)
            for k in range(rng.choice((1, 1, 4, 32))):
                if pos + k < size:
                    b[pos + k] ^= rng.choice((0x01, 0x80, 0xff, 0x5a))
            with open(flipped, "wb") as f:
                f.write(b)
            for cmd in (["stats"], ["parse"]):
                p = mrtest.run([memray, *cmd, flipped], timeout=60)
                what = "%s of capture with bytes flipped at %d" % (cmd[0], pos)
                c.check(not mrtest.crashed(p), what + ": no crash")
                c.check(p.returncode == 0 or mrtest.one_error_line(p),
                        what + ": works or one error line")

        # A flip inside the first block's stored bytes must be caught by its checksum.
        b = bytearray(data)
        header_len = 16 + int.from_bytes(data[12:16], "little")
        target = header_len + 17 + 3
        if target < size:
            b[target] ^= 0xff
            with open(flipped, "wb") as f:
                f.write(b)
            p = mrtest.run([memray, "stats", flipped])
            c.check(p.returncode != 0 and mrtest.one_error_line(p) and not mrtest.crashed(p),
                    "stats rejects a corrupt first block with one error line")
    c.finish()


if __name__ == "__main__":
    main()
