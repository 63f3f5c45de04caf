"""Tracker: records the allocations of this process while a `with` block runs.

The tracking is the payload that `memray run` and `memray attach` use, loaded into this
interpreter and started through its C API (one payload and one session per process).
"""

import errno
import logging
import os
import sys
import threading

from . import _memray
from ._destination import FileDestination, SocketDestination
from ._enums import FileFormat
from ._paths import payload_path

_lock = threading.Lock()
_active = None

# Payload log levels: 0 debug, 1 info, 2 warning, 3 error.
_log_level = 2


def set_log_level(level):
    """Which payload messages reach stderr: a `logging` level (default logging.WARNING)."""
    global _log_level
    level = int(level)
    if level <= logging.DEBUG:
        _log_level = 0
    elif level <= logging.INFO:
        _log_level = 1
    elif level <= logging.WARNING:
        _log_level = 2
    else:
        _log_level = 3


# Helpers compiled under the file name "<memray>": the reports drop such frames and every frame
# outside them (as they do for the `memray run` bootstrap).
#
# Frames above the `with` statement are hidden by the readers through a marker: right after
# tracking starts, __enter__ calls _memray_tracker_root, which makes one zero-byte allocation
# (in the extension, so that it never moves the heap). That allocation's stack is
# [marker, __enter__, with-frame, callers...]; the readers hide the callers from the stacks that
# end with them (docs/python-api.md, "Frames above the with").
#
# Threads started while tracking run through _memray_named_bootstrap, which names them in the
# capture; its frame (and threading's Thread._bootstrap outside it) is not shown. call_tracked and
# await_tracked run a function inside a Tracker without showing their own frame (the pytest
# plugin's test wrapper).
_HELPERS = """
def _memray_tracker_root(mark):
    mark()


def _memray_named_bootstrap(original, name_thread):
    def _bootstrap_inner(thread):
        name_thread(thread.name)
        return original(thread)
    return _bootstrap_inner


def call_tracked(tracker, function, args, kwargs):
    with tracker:
        return function(*args, **kwargs)


async def await_tracked(tracker, function, args, kwargs):
    with tracker:
        return await function(*args, **kwargs)
"""
_helpers = {}
exec(compile(_HELPERS, "<memray>", "exec"), _helpers)
_root_marker = _helpers["_memray_tracker_root"]
_named_bootstrap = _helpers["_memray_named_bootstrap"]
call_tracked = _helpers["call_tracked"]
await_tracked = _helpers["await_tracked"]


def start_thread_trace(frame, event, arg):
    """memray installs its profile function on new threads through this; the payload here reads
    every thread's frames itself, so there is nothing to install. A valid profile function that
    does nothing, for code that passes it to threading.setprofile."""
    return start_thread_trace


def _not_yet(what, issue):
    return NotImplementedError("%s is not supported yet (it comes with the %s work)" % (what, issue))


class Tracker:
    """Context manager that records every allocation of every thread of this process while its
    `with` block runs, into a capture file that FileReader and the memray reports read.

        with memray.Tracker("output.bin"):
            ...

    Only one Tracker can be active in a process at a time (also not while `memray run` or
    `memray attach` tracks it), and each Tracker can be entered once. With follow_fork=True a
    child forked inside the block records into "<file>.<child pid>" with the same options.
    """

    def __init__(self, file_name=None, *, destination=None, native_traces=False,
                 memory_interval_ms=10, follow_fork=False, trace_python_allocators=False,
                 file_format=FileFormat.ALL_ALLOCATIONS):
        if (file_name is None) == (destination is None):
            raise TypeError("Exactly one of 'file_name' or 'destination' argument must be specified")
        if file_name is not None:
            destination = FileDestination(path=file_name)
        if isinstance(destination, SocketDestination):
            raise _not_yet("SocketDestination (live tracking)", "live mode")
        if not isinstance(destination, FileDestination):
            raise TypeError("destination must be a SocketDestination or FileDestination")
        if memory_interval_ms <= 0:
            raise ValueError("memory_interval_ms must be positive")
        if memory_interval_ms != 10:
            raise NotImplementedError(
                "memory_interval_ms other than 10 is not supported yet (the payload samples the "
                "RSS every 10 ms)")

        path = os.path.abspath(os.fspath(destination.path))
        is_devnull = False
        try:
            is_devnull = os.path.samefile(path, os.devnull)
        except OSError:
            pass
        if not is_devnull:
            parent = os.path.dirname(path)
            if os.path.lexists(path) and not destination.overwrite:
                raise FileExistsError(errno.EEXIST, "Could not create output file: File exists", path)
            if not os.path.isdir(parent):
                raise FileNotFoundError(errno.ENOENT, "Could not create output file: no such directory",
                                        path)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "Could not create output file: directory not "
                                      "writable", path)

        self._path = path
        self._force = bool(destination.overwrite or is_devnull)
        self._compress = bool(destination.compress_on_exit)
        self._native_traces = bool(native_traces)
        self._follow_fork = bool(follow_fork)
        self._trace_python_allocators = bool(trace_python_allocators)
        self._aggregate = FileFormat(file_format) == FileFormat.AGGREGATED_ALLOCATIONS
        self._command_line = " ".join(sys.argv)
        self._used = False
        self._original_bootstrap = None

    def __enter__(self):
        global _active
        with _lock:
            if _active is not None:
                raise RuntimeError("No more than one Tracker instance can be active at the same time")
            if self._used:
                raise RuntimeError("Attempting to use stale output handle")
            self._used = True
            _memray.tracking_start(payload_path(), self._path, self._command_line,
                                   native=self._native_traces, compress=self._compress,
                                   force=self._force, log_level=_log_level,
                                   follow_fork=self._follow_fork,
                                   trace_python_allocators=self._trace_python_allocators,
                                   aggregate=self._aggregate)
            _active = self
            self._name_threads()
            # Must be called from here, directly: see _HELPERS.
            _root_marker(_memray.tracking_mark_root)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        global _active
        with _lock:
            if _active is not self:
                return
            _memray.tracking_stop()
            if self._original_bootstrap is not None:
                threading.Thread._bootstrap_inner = self._original_bootstrap
                self._original_bootstrap = None
            _active = None

    def _name_threads(self):
        # Python's thread names ("MainThread", "Thread-1") name the threads in the capture: this
        # one now, the ones started while tracking as they start.
        _memray.tracking_name_thread(threading.current_thread().name)
        original = threading.Thread._bootstrap_inner
        self._original_bootstrap = original
        threading.Thread._bootstrap_inner = _named_bootstrap(original, _memray.tracking_name_thread)
