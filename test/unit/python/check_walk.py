"""Checks memray's GIL-free Python stack walker against the interpreter's own view.

Usage: python check_walk.py <libmemray-pywalk-test.so>
The library is loaded with ctypes.CDLL, which releases the GIL around every call, so each walk
below also proves that the walker does not need the GIL.
"""
import atexit
import ctypes
import os
import subprocess
import sys
import threading
import traceback

LIB_PATH = os.path.abspath(sys.argv[1])
lib = ctypes.CDLL(LIB_PATH)
lib.test_walk.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t]
lib.test_walk.restype = ctypes.c_long
lib.test_version.restype = ctypes.c_char_p
lib.test_line_format.restype = ctypes.c_uint
lib.test_walk_in_native_thread.restype = ctypes.c_long
lib.test_walk_rooted.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
lib.test_walk_rooted.restype = ctypes.c_long
lib.test_walk_bench.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
lib.test_walk_bench.restype = ctypes.c_double

QUALNAMES = sys.version_info >= (3, 11)
failures = []
checks = 0


def capture(max_frames=512):
    """Walks with memray and with the interpreter at the same line; returns both, innermost
    first, as (function, file, line)."""
    buf = ctypes.create_string_buffer(1 << 20)
    expected, n = traceback.extract_stack(), lib.test_walk(buf, len(buf), max_frames)
    if n < 0:
        raise AssertionError("test_walk failed with %d" % n)
    got = [tuple(line.split("\t")) for line in buf.value.decode("utf-8").splitlines()]
    got = [(name, filename, int(line)) for name, filename, line in got]
    assert len(got) == n, (len(got), n)
    # extract_stack gives co_name; memray records co_qualname where the interpreter has one.
    frames = []
    frame = sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    want = []
    for summary, frame in zip(reversed(expected), frames):
        code = frame.f_code
        assert code.co_name == summary.name
        want.append((code.co_qualname if QUALNAMES else code.co_name, summary.filename,
                     summary.lineno))
    return got, want


def truncate_utf8(text, limit):
    """What a fixed char[limit] buffer can hold: whole characters, room for the terminator."""
    data = text.encode("utf-8")
    if len(data) < limit:
        return text
    return data[:limit - 1].decode("utf-8", errors="ignore")


def check(label, max_frames=512, min_depth=2):
    global checks
    got, want = capture(max_frames)
    checks += 1
    if max_frames < len(want):
        want = want[:max_frames]
    want = [(truncate_utf8(name, 256), truncate_utf8(filename, 1024), line)
            for name, filename, line in want]
    if got != want or len(got) < min_depth:
        failures.append(label)
        print("FAIL %s" % label)
        print("  memray:     %s" % got)
        print("  interpreter: %s" % want)
    return got


def rooted_inner():
    buf = ctypes.create_string_buffer(1 << 16)
    n = lib.test_walk_rooted(buf, len(buf), id(rooted_outer.__code__))
    got = [line.split("\t")[0] for line in buf.value.decode("utf-8").splitlines()]
    return n, got


def rooted_middle():
    return rooted_inner()


def rooted_outer():
    return rooted_middle()


def check_rooted():
    """`memray run` stops the walk at its bootstrap's frame: only the frames inside it."""
    global checks
    checks += 1
    n, got = rooted_outer()
    if n != 2 or got != ["rooted_inner", "rooted_middle"]:
        failures.append("rooted walk")
        print("FAIL rooted walk: %d frames %r" % (n, got))
    checks += 1
    n, got = rooted_inner()  # the root is not on the stack: the whole walk
    if n < 2 or got[:2] != ["rooted_inner", "check_rooted"] or got[-1] != "<module>":
        failures.append("rooted walk, root not on the stack")
        print("FAIL rooted walk, root not on the stack: %d frames %r" % (n, got))


def level3():
    return check("nested functions")


def level2():
    return level3()


def level1():
    return level2()


class Widget:
    def method(self):
        return check("method")

    @staticmethod
    def static():
        return check("staticmethod")

    @property
    def prop(self):
        return check("property (called from C attribute lookup)")


def outer():
    def middle():
        def inner():
            return check("nested closure")
        return inner()
    return middle()


def generator():
    yield check("generator")
    yield check("generator, second step")


def consume_generator():
    return list(generator())


async def coroutine():
    return check("coroutine")


def run_coroutine():
    co = coroutine()
    try:
        co.send(None)
    except StopIteration:
        pass


def recursive(n, max_frames, label):
    if n == 0:
        return check(label, max_frames, min_depth=min(max_frames, 40))
    return recursive(n - 1, max_frames, label)


def through_c_code():
    # sorted() calls the key function from C: a C -> Python entry in the middle of the chain.
    return sorted([3, 1, 2], key=lambda x: (check("lambda called from sorted()"), x)[1])


class Operand:
    def __add__(self, other):
        return check("__add__ called by a binary operator")

    def __del__(self):
        check("__del__ called when a local is overwritten")


def operator_overload():
    return Operand() + 1


def finalizer():
    obj = Operand()
    obj = None
    return obj


# Names and a file name in each str storage kind (ASCII, UCS1, UCS2, UCS4), and names longer
# than the fixed buffers.
UNICODE_SOURCE = """
def caf\u00e9_\u00fc():
    return check("UCS1 function name")

def \u0444\u0443\u043d\u043a\u0446\u0438\u044f():
    return caf\u00e9_\u00fc()

def \U00020000\U00020001():
    return \u0444\u0443\u043d\u043a\u0446\u0438\u044f()

def %s():
    return \U00020000\U00020001()

def %s():
    return %s()
""" % ("long_" * 60, "\u0436" * 200, "long_" * 60)
UNICODE_FILE = "/tmp/f\u00efl\u00e9_\u540d\u524d_\U0001f40d" + "_long" * 250 + ".py"


def unicode_names():
    namespace = {"check": check}
    exec(compile(UNICODE_SOURCE, UNICODE_FILE, "exec"), namespace)
    namespace["\u0436" * 200]()


def in_comprehension():
    return [check("list comprehension") for _ in range(1)]


def in_exception_handler():
    try:
        raise ValueError("x")
    except ValueError:
        return check("except block")


def multi_line_call():
    return max(
        len(check("multi-line call")),
        0,
    )


def thread_body(results, index):
    for _ in range(50):
        level1()
        outer()
    results[index] = True


def busy_python_work(stop):
    # Keeps the GIL busy on another thread while the workers walk their own stacks.
    total = 0
    while not stop.is_set():
        total += sum(i * i for i in range(1000))


def bench(depth, iterations=200000, max_frames=128):
    if depth > 1:
        return bench(depth - 1, iterations, max_frames)
    return lib.test_walk_bench(iterations, max_frames)


def main():
    version = lib.test_version().decode()
    expected_version = "%d.%d.%d" % sys.version_info[:3]
    if version != expected_version:
        print("FAIL: walker detected version %r, interpreter is %s" % (version, expected_version))
        return 1
    line_format = lib.test_line_format()
    if line_format != (sys.version_info[0] << 8 | sys.version_info[1]):
        print("FAIL: line format 0x%04x" % line_format)
        return 1

    check("module level", min_depth=1)
    level1()
    Widget().method()
    Widget.static()
    Widget().prop
    outer()
    consume_generator()
    run_coroutine()
    through_c_code()
    in_comprehension()
    operator_overload()
    unicode_names()
    finalizer()
    in_exception_handler()
    multi_line_call()
    recursive(60, 512, "recursion 60 deep")
    recursive(60, 10, "recursion 60 deep, truncated to the innermost 10")
    recursive(300, 512, "recursion 300 deep")
    check_rooted()

    results = [False] * 4
    stop = threading.Event()
    busy = threading.Thread(target=busy_python_work, args=(stop,))
    busy.start()
    workers = [threading.Thread(target=thread_body, args=(results, i), name="walker-%d" % i)
               for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    busy.join()
    if not all(results):
        failures.append("threads")
        print("FAIL: a walker thread died")

    native = lib.test_walk_in_native_thread()
    if native != 0:
        failures.append("native thread")
        print("FAIL: a thread unknown to Python walked %d frames" % native)

    # After finalization (a C atexit handler runs after Py_FinalizeEx) and before initialization
    # (a preloaded constructor): both must walk 0 frames without crashing.
    child = subprocess.run([sys.executable, __file__, LIB_PATH, "--exit-walk"],
                           stdout=subprocess.PIPE, universal_newlines=True)
    if child.returncode != 0 or "exit-walk 0" not in child.stdout:
        failures.append("walk after finalization")
        print("FAIL: walk after finalization: rc=%d out=%r" % (child.returncode, child.stdout))
    env = dict(os.environ, LD_PRELOAD=LIB_PATH, MEMRAY_TEST_WALK_AT_LOAD="1")
    child = subprocess.run([sys.executable, "-c", "pass"], env=env, stdout=subprocess.PIPE,
                           universal_newlines=True)
    if child.returncode != 0 or "load-walk init=1 frames=0" not in child.stdout:
        failures.append("walk before initialization")
        print("FAIL: walk before initialization: rc=%d out=%r" % (child.returncode, child.stdout))

    ns10 = bench(10)
    ns50 = bench(50)
    print("python_walk cost: %.0f ns at depth ~10, %.0f ns at depth ~50" % (ns10, ns50))

    print("%s (walker %s): %d stack comparisons, %d failures" % (
        sys.executable, version, checks, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    if "--exit-walk" in sys.argv:
        lib.test_walk_at_exit()
        check("atexit-registered process, normal walk", min_depth=1)
        sys.exit(1 if failures else 0)
    sys.exit(main())
