"""The bundled Python demo for ./scripts/demo.sh.

Allocations that are easy to recognise in `memray summary`: load_records() keeps 7 buffers of
1 MiB alive, called from build_index(); a "worker" thread builds many short-lived lists.
"""
import threading

MIB = 1024 * 1024


def load_records(count):
    # Larger than pymalloc's 512-byte limit: each buffer is one allocation in the system allocator.
    return [bytearray(MIB) for _ in range(count)]


def build_index():
    records = load_records(7)
    del records[:3]  # 3 buffers freed again, 4 stay alive until the end
    return records


def churn():
    total = 0
    for i in range(200):
        chunk = [str(n) * 10 for n in range(500)]
        total += len(chunk)
    return total


def main():
    worker = threading.Thread(target=churn, name="worker")
    worker.start()
    index = build_index()
    worker.join()
    print("demo.py: kept %d MiB in %d buffers" % (sum(len(b) for b in index) // MIB, len(index)))


if __name__ == "__main__":
    main()
