# Calls the hybrid_ext C extension two Python levels below main (main -> outer -> py_caller ->
# hybrid_ext.alloc), for the hybrid-stack tests. The driver finds lines by the "# MARK:"
# comments: keep them on the right lines.
# usage: hybrid_caller.py EXT_DIR N KEEP    one call, then exits
#        hybrid_caller.py EXT_DIR serve     service: "alloc N KEEP" -> "done N KEEP", "quit"
import sys

sys.path.insert(0, sys.argv[1])
import hybrid_ext  # noqa: E402


def py_caller(n, keep):
    hybrid_ext.alloc(n, keep)  # MARK: py_call


def outer(n, keep):
    py_caller(n, keep)  # MARK: outer_call


def main():
    if sys.argv[2] != "serve":
        n, keep = int(sys.argv[2]), int(sys.argv[3])
        outer(n, keep)  # MARK: main_call
        print("allocated %d kept %d size %d" % (n, keep, hybrid_ext.size()))
        return
    print("ready size %d" % hybrid_ext.size(), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["alloc"]:
            n, keep = int(cmd[1]), int(cmd[2])
            outer(n, keep)  # MARK: serve_call
            print("done %d %d" % (n, keep), flush=True)
        elif cmd[:1] == ["quit"]:
            return


main()  # MARK: module
