# Target of test_trace_python_allocators.py: makes an exact number of Python objects through
# each of CPython's object allocator entry points, frees some of them, and one block through a
# malloc pointer looked up with dlsym (ctypes.CDLL(None).malloc).
# argv: COUNT DROP. Prints "done" at the end. The driver finds lines by the "# MARK:" comments.
import ctypes
import sys

BLOB = 200          # UNIT * BLOB: PyObject_Malloc(33 + BLOB) (bytes header 32 + NUL)
ZEROED = 300        # bytes(ZEROED): PyObject_Calloc(1, 33 + ZEROED)
NATIVE = 3000000    # malloc through a pointer from dlsym
UNIT = b"\x07"      # a variable: the compiler must not fold UNIT * BLOB into a constant
KEEP = []


def make_blobs(n):
    for _ in range(n):
        KEEP.append(UNIT * BLOB)  # MARK: blob


def make_zeroed(n):
    for _ in range(n):
        KEEP.append(bytes(ZEROED))  # MARK: zeroed


def drop(n):
    del KEEP[:n]  # the first n blobs


def native_malloc():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    return libc.malloc(NATIVE)  # MARK: native


def main():
    count, dropped = int(sys.argv[1]), int(sys.argv[2])
    make_blobs(count)
    make_zeroed(count)
    drop(dropped)
    block = native_malloc()
    print("done %d" % (block != 0))


main()
