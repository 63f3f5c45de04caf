"""The IPython extension: `%load_ext memray`, then `%%memray_flamegraph [options]` on a cell
runs the cell under a Tracker and shows the cell's flame graph inline.

The page is written by the `memray flamegraph` command to
memray-results/<new directory>/flamegraph.html (relative to the working directory, where the
notebook server can serve it); the capture is deleted afterwards. IPython is imported only when
the extension is loaded, never by `import memray`.
"""

import argparse
import os
import shlex
import subprocess
import tempfile
import textwrap

from ._paths import memray_executable

RESULTS_DIR = "memray-results"


def _parser():
    p = argparse.ArgumentParser(prog="%%memray_flamegraph",
                                description="Profile the cell's memory and show its flame graph.")
    p.add_argument("--native", action="store_true", help="Record native frames too")
    p.add_argument("--follow-fork", action="store_true",
                   help="Track child processes forked by the cell (not supported yet)")
    p.add_argument("--trace-python-allocators", action="store_true",
                   help="Record pymalloc allocations (not supported yet)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--leaks", action="store_true",
                      help="Show what was not freed, instead of peak memory usage")
    view.add_argument("--temporary-allocation-threshold", metavar="N", type=int, default=-1,
                      help="Show allocations freed after at most N other allocations")
    view.add_argument("--temporary-allocations", action="store_true",
                      help="Show allocations freed right after the next one")
    p.add_argument("--temporal", action="store_true",
                   help="Pick a time window on the memory plot")
    p.add_argument("--split-threads", action="store_true", help="One tree per thread")
    p.add_argument("--inverted", action="store_true", help="Allocating functions at the root")
    p.add_argument("--max-memory-records", metavar="N", type=int, default=10000,
                   help="At most N points in the memory plot (default 10000)")
    return p


def _parse(line):
    from IPython.core.error import UsageError

    parser = _parser()
    try:
        args = parser.parse_args(shlex.split(line))
    except SystemExit as e:  # argparse printed the usage (or --help)
        if e.code:
            raise UsageError("invalid options for %%memray_flamegraph: " + line) from None
        return None
    if args.temporary_allocations:
        args.temporary_allocation_threshold = 1
    if args.temporary_allocation_threshold == 0 or args.temporary_allocation_threshold < -1:
        raise UsageError("--temporary-allocation-threshold must be a positive integer")
    if args.temporal and args.temporary_allocation_threshold > 0:
        raise UsageError("--temporal cannot be combined with temporary allocations")
    if args.max_memory_records <= 0:
        raise UsageError("--max-memory-records must be a positive integer")
    return args


def _flamegraph_command(args, capture, output):
    cmd = [memray_executable(), "flamegraph", "-f", "-o", output]
    if args.leaks:
        cmd.append("--leaks")
    if args.temporary_allocation_threshold > 0:
        cmd += ["--temporary-allocation-threshold", str(args.temporary_allocation_threshold)]
    for flag in ("temporal", "split_threads", "inverted"):
        if getattr(args, flag):
            cmd.append("--" + flag.replace("_", "-"))
    cmd += ["--max-memory-records", str(args.max_memory_records), capture]
    return cmd


def memray_flamegraph(shell, line, cell):
    """The cell magic; returns the path of the page (None for --help)."""
    from IPython.display import IFrame, display

    args = _parse(line)
    if args is None:
        return None
    options = dict(native_traces=args.native, follow_fork=args.follow_fork,
                   trace_python_allocators=args.trace_python_allocators)
    # Refuse unsupported options before running or creating anything.
    from ._tracker import Tracker
    Tracker(os.devnull, **options)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    results = tempfile.mkdtemp(dir=RESULTS_DIR)
    capture = os.path.join(results, "memray.dump")
    output = os.path.join(results, "flamegraph.html")
    # The cell runs inside the `with`, in the user's namespace, so that its frames start at the
    # cell (the frames above the `with` are hidden by the readers).
    code = "with __import__('memray').Tracker(%r, **%r):\n%s\n" % (
        capture, options, textwrap.indent(cell, "    ") or "    pass")
    result = shell.run_cell(code, store_history=False, silent=False)
    try:
        if not os.path.exists(capture):
            if result is not None and result.error_in_exec is not None:
                raise result.error_in_exec
            raise RuntimeError("no capture was written")
        proc = subprocess.run(_flamegraph_command(args, capture, output), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise RuntimeError("memray flamegraph failed: %s" % proc.stderr.decode(errors="replace"))
    finally:
        if os.path.exists(capture):
            os.unlink(capture)
    print("Results saved to", output)
    display(IFrame(output, width="100%", height="600"))
    return output


def load_ipython_extension(ipython):
    """`%load_ext memray`: registers %%memray_flamegraph."""

    def magic(line, cell):
        memray_flamegraph(ipython, line, cell)

    magic.__doc__ = _parser().format_help()
    ipython.register_magic_function(magic, magic_kind="cell", magic_name="memray_flamegraph")
