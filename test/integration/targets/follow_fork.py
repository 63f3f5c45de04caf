"""Python fork scenarios for --follow-fork (test_follow_fork.py; the output lines are described
there). bytearray(n - 1) is one malloc of n bytes (the trailing NUL), of sizes nothing else uses.
Modes:
  os_fork          os.fork(); the child allocates and leaves through os._exit()
  multiprocessing  three multiprocessing.Process of the "fork" start method
  prefork          a pre-fork server: three workers forked up front serve requests from a pipe
                   while the parent waits for them
  thread           30 os.fork() while another thread allocates in a tight loop from code objects
                   it keeps compiling (new stack nodes and code records all the time, so forks
                   land while it holds the payload's intern lock)
"""

import multiprocessing
import os
import sys
import threading

BEFORE = 1500007
AFTER = 1500011
CHILD = 1500013
WORKER = 1600000  # worker i: WORKER + 16 * i


def allocate(size, count):
    for _ in range(count):
        b = bytearray(size - 1)
        del b


def wait_ok(pid):
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        sys.exit("child %d failed (status %#x)" % (pid, status))


def os_fork():
    allocate(BEFORE, 3)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        allocate(CHILD, 5)
        os._exit(0)
    wait_ok(pid)
    allocate(AFTER, 4)
    me = os.getpid()
    print("PARENT %d" % me)
    print("CHILD %d %d 3" % (me, BEFORE))
    print("CHILD %d %d 4" % (me, AFTER))
    print("NOT %d %d" % (me, CHILD))
    print("CHILD %d %d 5" % (pid, CHILD))
    print("NOT %d %d" % (pid, BEFORE))
    print("NOT %d %d" % (pid, AFTER))


def mp_work(size):
    allocate(size, 4)


def with_multiprocessing():
    ctx = multiprocessing.get_context("fork")
    procs = []
    for i in range(3):
        p = ctx.Process(target=mp_work, args=(WORKER + 16 * i,))
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit("worker %d failed with %r" % (p.pid, p.exitcode))
    me = os.getpid()
    print("PARENT %d" % me)
    for i, p in enumerate(procs):
        print("CHILD %d %d 4" % (p.pid, WORKER + 16 * i))
        print("NOT %d %d" % (p.pid, WORKER + 16 * ((i + 1) % 3)))
        print("NOT %d %d" % (me, WORKER + 16 * i))


def serve(i, requests):
    served = 0
    with os.fdopen(requests, "rb") as f:
        while f.read(1):
            allocate(WORKER + 16 * i, 1)
            served += 1
    os._exit(0 if served == 5 else 1)


def prefork():
    workers = []
    for i in range(3):
        r, w = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            for _, _, other in workers:
                os.close(other)
            serve(i, r)
        os.close(r)
        workers.append((i, pid, w))
    for _, _, w in workers:
        os.write(w, b"x" * 5)
        os.close(w)
    for _, pid, _ in workers:
        wait_ok(pid)
    me = os.getpid()
    print("PARENT %d" % me)
    for i, pid, _ in workers:
        print("CHILD %d %d 5" % (pid, WORKER + 16 * i))
        print("NOT %d %d" % (me, WORKER + 16 * i))


SPIN = 1700021


def spin(stop):
    i = 0
    while not stop.is_set():
        i += 1
        exec(compile("b = bytearray(%d)\nc = [b] * %d\n" % (SPIN - 1, i % 50), "<gen%d>" % i,
                     "exec"), {})


def fork_beside_thread():
    stop = threading.Event()
    t = threading.Thread(target=spin, args=(stop,), name="spinner")
    t.start()
    pids = []
    try:
        for _ in range(30):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                allocate(CHILD, 3)
                os._exit(0)
            pids.append(pid)
            wait_ok(pid)
    finally:
        stop.set()
        t.join()
    me = os.getpid()
    print("PARENT %d" % me)
    print("NOT %d %d" % (me, CHILD))
    for pid in pids:
        print("CHILD %d %d 3" % (pid, CHILD))
        print("NOT %d %d" % (pid, SPIN))


if __name__ == "__main__":
    {"os_fork": os_fork, "multiprocessing": with_multiprocessing, "prefork": prefork,
     "thread": fork_beside_thread}[sys.argv[1]]()
