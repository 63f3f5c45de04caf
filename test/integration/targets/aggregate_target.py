"""Deterministic allocations for comparing reports of a full and an aggregated capture of the
same run (test_aggregate.py): nested calls, a peak freed later, leaks kept in a global, a thread
run to completion while the main thread waits.

The thread comes from _thread with locks, not threading.Thread: Thread.start() allocates in
both threads at once, so which location is seen first (the order in which reports list
locations) would change from run to run. And it never ends: whether an ended thread's state is
freed before tracking stops would change the leaks from run to run."""

import _thread

KEEP = []


def leaf(n):
    return bytearray(n)


def build_peak(count, size):
    return [leaf(size + i) for i in range(count)]


def churn(rounds):
    for i in range(rounds):
        b = leaf(1000 + i % 7)
        b += bytes(2000)
        del b


def worker(done, forever):
    blocks = build_peak(16, 20000)
    KEEP.extend(blocks[8:])
    done.release()
    forever.acquire()  # blocks without allocating until the process ends


def main():
    churn(300)
    peak = build_peak(200, 50000)
    del peak
    churn(200)
    done = _thread.allocate_lock()
    forever = _thread.allocate_lock()
    done.acquire()
    forever.acquire()
    _thread.start_new_thread(worker, (done, forever))
    done.acquire()  # blocks without allocating until the worker has allocated
    KEEP.extend(leaf(4096 * (i + 1)) for i in range(8))
    print("done")


main()
