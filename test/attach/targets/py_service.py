# A small Python "service" for the attach tests. serve() reads commands on stdin (so between
# requests the main thread is blocked in read(), inside frames that were running long before any
# attach) and a worker thread waits on a queue. Each request:
#   - makes one temporary buffer that is freed before the request ends (temporary_work),
#   - leaks one buffer of LEAK_SIZE bytes on the main thread (leak_memory),
#   - has the worker thread leak one buffer of WORKER_LEAK_SIZE bytes (worker_leak).
# bytearray(n) asks the object allocator for n + 1 bytes, above pymalloc's limit: it reaches malloc.
# Commands: "req K" -> handles K requests, answers "served K"; "quit" -> exits.
# The driver finds lines by the "# MARK:" comments: keep them on the right lines.
import queue
import sys
import threading

LEAK_SIZE = 200000
WORKER_LEAK_SIZE = 300000
TEMP_SIZE = 150000
LEAKED = []

jobs = queue.Queue()
finished = queue.Queue()


def temporary_work():
    buf = bytearray(TEMP_SIZE)  # MARK: temp
    return len(buf)


def leak_memory():
    LEAKED.append(bytearray(LEAK_SIZE))  # MARK: leak


def worker_leak():
    LEAKED.append(bytearray(WORKER_LEAK_SIZE))  # MARK: worker_leak


def worker_loop():
    while True:
        job = jobs.get()
        if job is None:
            return
        worker_leak()  # MARK: worker_call
        finished.put(job)


def handle_request(n):
    temporary_work()
    leak_memory()  # MARK: handle_call
    jobs.put(n)
    finished.get()


def serve():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd = line.split()
        if cmd[:1] == ["req"]:
            count = int(cmd[1])
            for n in range(count):
                handle_request(n)  # MARK: serve_call
            sys.stdout.write("served %d\n" % count)
            sys.stdout.flush()
        elif cmd[:1] == ["quit"]:
            return


def main():
    worker = threading.Thread(target=worker_loop, name="worker")
    worker.start()
    sys.stdout.write("ready %d\n" % threading.get_ident())
    sys.stdout.flush()
    try:
        serve()  # MARK: main_call
    finally:
        jobs.put(None)
        worker.join()


main()  # MARK: module
