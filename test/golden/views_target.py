# Known peak, leaks, temporaries and a slow-lived buffer, for the report views' tests.
# bytearray(n) asks the interpreter's allocator for n + 1 bytes: above pymalloc's 512-byte limit,
# so every buffer below is one malloc of n + 1 bytes with this file's frames on its stack.
# Each announces itself as "EXPECT <what> <function> <size> <count>"; the test finds the line
# numbers by the "# MARK:" comments.
import sys
import time

LEAKED = []


def leak(n):
    LEAKED.append(bytearray(n))  # MARK: leak


def peak():
    buffers = [bytearray(3000000) for _ in range(3)]  # MARK: peak
    return len(buffers)


def temporaries():
    for _ in range(5):
        bytearray(50000)  # MARK: temporary


def slow_lived():
    buf = bytearray(700000)  # MARK: slow
    time.sleep(0.2)  # several memory samples (10 ms apart) between its malloc and its free
    return len(buf)


def main():
    leak(200000)
    leak(200000)
    peak()
    temporaries()
    slow_lived()
    leak(100000)
    out = sys.stdout.write
    out("EXPECT leak leak %d 2\n" % 200001)
    out("EXPECT leak leak %d 1\n" % 100001)
    out("EXPECT peak peak %d 3\n" % 3000001)
    out("EXPECT temporary temporaries %d 5\n" % 50001)
    out("EXPECT slow slow_lived %d 1\n" % 700001)


main()
