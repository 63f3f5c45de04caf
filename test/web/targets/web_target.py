"""Target of the HTML report tests: three phases of known allocations, a function whose name and
file are an HTML injection attempt, and threads.

Prints `PHASE <name> <unix time> <bytes>` lines so the driver knows what happened when.
bytearray(n) asks malloc for n + 1 bytes (the trailing NUL), so the bytes printed are n + 1.
"""
import os
import sys
import tempfile
import threading
import time

HOSTILE = "<img src=x onerror=alert(1)>"
keep = []


def phase(name, nbytes):
    print("PHASE %s %.6f %d" % (name, time.time(), nbytes + 1), flush=True)


def first_phase():
    keep.append(bytearray(6_000_000))


def second_phase():
    keep.append(bytearray(9_000_000))


def third_phase():
    return bytearray(20_000_000)


def worker_allocation():
    keep.append(bytearray(4_000_000))


# A function whose name (co_name / co_qualname) and file are markup: the page must show it as
# text and never run it.
_ns = {"keep": keep}
exec(compile("def hostile():\n    keep.append(bytearray(3_000_000))\n", HOSTILE, "exec"), _ns)
hostile = _ns["hostile"]
_replace = {"co_name": HOSTILE}
if sys.version_info >= (3, 11):
    _replace["co_qualname"] = HOSTILE
hostile.__code__ = hostile.__code__.replace(**_replace)


def import_phase():
    # A module that allocates while it is imported: its stack runs through importlib's frames.
    d = tempfile.mkdtemp(prefix="mr-web-mod-")
    with open(os.path.join(d, "web_imported_mod.py"), "w") as f:
        f.write("data = bytearray(2_500_000)\n")
    sys.path.insert(0, d)
    import web_imported_mod  # noqa: F401
    keep.append(web_imported_mod)


def main():
    time.sleep(0.15)
    phase("first", 6_000_000)
    first_phase()
    time.sleep(0.4)
    phase("second", 9_000_000)
    second_phase()
    t = threading.Thread(target=worker_allocation, name="web-worker")
    t.start()
    t.join()
    phase("worker", 4_000_000)
    hostile()
    phase("hostile", 3_000_000)
    import_phase()
    phase("import", 2_500_000)
    time.sleep(0.4)
    phase("third", 20_000_000)
    temp = third_phase()
    phase("third_alive", 0)  # a loaded machine may run it late: the window ends on this
    time.sleep(0.4)
    del temp
    phase("third_freed", 0)
    time.sleep(0.4)
    phase("end", 0)


main()
