"""Allocation-heavy Python workload: builds and drops many small containers and strings, and some
large buffers, the mix a data-processing script produces. Scale with argv[1] (default 1.0)."""

import sys


def make_record(i):
    return {"id": i, "name": "item-%d" % i, "tags": [str(i % 7), str(i % 11)], "value": i * 0.5}


def process(batch):
    out = []
    for rec in batch:
        key = rec["name"].upper() + ":" + ",".join(rec["tags"])
        out.append((key, rec["value"] * 2))
    return out


def main(scale):
    total = 0
    rounds = int(800 * scale)
    for r in range(rounds):
        batch = [make_record(r * 1000 + i) for i in range(1000)]
        result = process(batch)
        blob = bytearray(64 * 1024 + r)  # a large buffer per round reaches malloc
        total += len(result) + len(blob)
        del batch, result, blob
    print("total", total)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
