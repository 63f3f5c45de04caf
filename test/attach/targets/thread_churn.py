# A Python program that starts and ends short-lived threads all the time: CHURNERS threads each
# start BATCH workers that allocate a little and end within milliseconds, join them, and start
# again. An attach lands while threads are being created and while others are exiting.
# Commands on stdin: "count" -> "count <workers finished>"; "quit" -> "finished <n>" and exit 0.
# Prints "ready" once the churn runs.
import sys
import threading

CHURNERS = 2
BATCH = 4

finished = [0] * CHURNERS
stop = threading.Event()


def worker(n):
    blocks = [bytearray(1024 + n % 64) for _ in range(20)]
    text = "-".join(str(i) for i in range(50))
    return len(blocks) + len(text)


def churn(slot):
    n = 0
    while not stop.is_set():
        batch = [threading.Thread(target=worker, args=(n + i,)) for i in range(BATCH)]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
        n += BATCH
        finished[slot] = n


def main():
    churners = [threading.Thread(target=churn, args=(i,), name="churn-%d" % i)
                for i in range(CHURNERS)]
    for t in churners:
        t.start()
    while sum(finished) == 0:
        threading.Event().wait(0.001)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.startswith("count"):
            print("count %d" % sum(finished), flush=True)
        elif line.startswith("quit"):
            break
    stop.set()
    for t in churners:
        t.join()
    print("finished %d" % sum(finished), flush=True)


if __name__ == "__main__":
    main()
