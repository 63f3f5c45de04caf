"""A busy Python service for bench/bench_attach.py --pause: THREADS threads build and drop small
records and large buffers without pause (the py_alloc.py mix), so an attach always lands in the
middle of allocation-heavy Python code. Prints "ready" and runs until its stdin closes."""

import sys
import threading

THREADS = 3


def make_record(i):
    return {"id": i, "name": "item-%d" % i, "tags": [str(i % 7), str(i % 11)], "value": i * 0.5}


def work():
    r = 0
    while True:
        batch = [make_record(r * 100 + i) for i in range(100)]
        keys = [rec["name"].upper() + ":" + ",".join(rec["tags"]) for rec in batch]
        blob = bytearray(64 * 1024 + r % 1024)  # a large buffer reaches malloc
        r += len(keys) + len(blob) % 2


def main():
    for i in range(THREADS):
        threading.Thread(target=work, daemon=True, name="busy-%d" % i).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
