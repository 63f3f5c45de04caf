"""Reading captures: FileReader and the records it yields.

The extension (_memray.CaptureFile) reads the file and makes the AllocationRecords; records
resolve their stacks only when asked.
"""

import collections
import os
import subprocess
import warnings

from . import _memray
from ._enums import DEALLOCATORS, AllocatorType, FileFormat
from ._errors import MemrayError
from ._metadata import metadata_from
from ._paths import memray_executable

MemorySnapshot = collections.namedtuple("MemorySnapshot", "time rss heap")

_PYTHON, _NATIVE, _HYBRID = 0, 1, 2
_MERGED_TID = 0


def size_fmt(num, suffix="B"):
    """A byte count as memray prints it: 1000-based units, 3 decimals ("2.047kB")."""
    for unit in ["", "k", "M", "G", "T", "P", "E", "Z"]:
        if abs(num) < 1000.0:
            return "%5.3f%s%s" % (num, unit, suffix)
        num /= 1000.0
    return "%.1fY%s" % (num, suffix)


def _stack(capture, kind, allocator, node, max_stacks):
    if allocator in DEALLOCATORS:
        raise NotImplementedError("Stack traces for deallocations aren't captured.")
    if max_stacks is not None and max_stacks <= 0:
        return []
    return capture.stack(node, kind, max_stacks or 0)


class _StackMethods:
    """stack_trace / native_stack_trace / hybrid_stack_trace, cached per record."""

    __slots__ = ()

    def _trace(self, kind, max_stacks):
        key = (kind, max_stacks)
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        if key not in cache:
            cache[key] = _stack(self._capture, kind, self.allocator, self.stack_id, max_stacks)
        return cache[key]

    def stack_trace(self, max_stacks=None):
        """Python frames as (function, file, line), most recent first. On the thread that
        entered a Tracker, the frames above its `with` statement are left out."""
        return self._trace(_PYTHON, max_stacks)

    def native_stack_trace(self, max_stacks=None):
        """Native frames as (symbol, file, line), most recent first (captures made with
        native_traces=True / --native; else empty)."""
        return self._trace(_NATIVE, max_stacks)

    def hybrid_stack_trace(self, max_stacks=None):
        """Native frames with each eval-loop frame replaced by the Python frames it ran."""
        return self._trace(_HYBRID, max_stacks)

    @property
    def thread_name(self):
        if self.tid == _MERGED_TID:
            return "merged thread"
        return self._capture.thread_name(self.tid)


# One allocation (get_allocation_records) or the allocations of one location (the snapshot
# views: address 0, n_allocations of them, size their total). In C++ (src/python/py_record.cpp):
# get_allocation_records makes one per event.
AllocationRecord = _memray.AllocationRecord


class Interval:
    """Allocations of one location made before memory snapshot `allocated_before_snapshot`
    and freed before `deallocated_before_snapshot` (None: never freed)."""

    __slots__ = ("allocated_before_snapshot", "deallocated_before_snapshot", "n_allocations",
                 "n_bytes")

    def __init__(self, allocated_before_snapshot, deallocated_before_snapshot, n_allocations,
                 n_bytes):
        self.allocated_before_snapshot = allocated_before_snapshot
        self.deallocated_before_snapshot = deallocated_before_snapshot
        self.n_allocations = n_allocations
        self.n_bytes = n_bytes

    def _key(self):
        return (self.allocated_before_snapshot, self.deallocated_before_snapshot,
                self.n_allocations, self.n_bytes)

    def __eq__(self, other):
        if type(other) is not Interval:
            return NotImplemented
        return self._key() == other._key()

    def __repr__(self):
        return ("Interval(allocated_before_snapshot=%r, deallocated_before_snapshot=%r, "
                "n_allocations=%r, n_bytes=%r)" % self._key())


class TemporalAllocationRecord(_StackMethods):
    """One location with its `intervals` (get_temporal_allocation_records)."""

    __slots__ = ("_tuple", "_capture", "_cache", "intervals")

    def __init__(self, record, capture=None, intervals=()):
        self._tuple = tuple(record)
        self._capture = capture
        self._cache = None
        self.intervals = list(intervals)

    def __eq__(self, other):
        if type(other) is not TemporalAllocationRecord:
            return NotImplemented
        return self._tuple == other._tuple and self.intervals == other.intervals

    def __hash__(self):
        return hash(self._tuple)

    tid = property(lambda self: self._tuple[0])
    allocator = property(lambda self: AllocatorType(self._tuple[1]))
    stack_id = property(lambda self: self._tuple[2])
    native_stack_id = property(lambda self: self._tuple[3])
    native_segment_generation = property(lambda self: self._tuple[4])


class FileReader:
    """Reads a capture file (context manager). The constructor reads it once, for the
    high-water mark and the memory snapshots; each get_* method reads it again."""

    def __init__(self, file_name, *, report_progress=False, max_memory_records=10000):
        path = os.fspath(file_name)
        self._capture = _memray.CaptureFile(path, max_memory_records, report_progress)
        self._header = self._capture.header()
        if self._header["truncated"]:
            warnings.warn(
                "%s is incomplete (%s): reading what it holds up to its last complete block"
                % (path, self._header["truncation_reason"]), RuntimeWarning, stacklevel=2)

    def close(self):
        self._capture = None

    @property
    def closed(self):
        return self._capture is None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def _open_capture(self):
        if self._capture is None:
            raise ValueError("Operation on a closed FileReader")
        return self._capture

    def _require_all_allocations(self, what):
        if self._header["aggregated"]:
            raise NotImplementedError("Can't %s using a pre-aggregated capture file." % what)

    @property
    def metadata(self):
        self._open_capture()
        h = self._header
        return metadata_from(
            dict(h, total_allocations=h["total_records"], main_thread_id=h["main_tid"],
                 has_native_traces=h["native"], trace_python_allocators=h["python_allocators"],
                 file_format=(FileFormat.AGGREGATED_ALLOCATIONS if h["aggregated"]
                              else FileFormat.ALL_ALLOCATIONS)),
            h["peak_memory"])

    def get_allocation_records(self):
        """Every allocation and deallocation in file order, streamed from the file."""
        capture = self._open_capture()
        self._require_all_allocations("get all allocations")
        yield from capture.events()

    def _view(self, view, merge_threads, threshold=1):
        capture = self._open_capture()
        yield from capture.records(view, bool(merge_threads), threshold)

    def get_high_watermark_allocation_records(self, merge_threads=True):
        """The allocations alive at the high-water mark, one record per location."""
        yield from self._view(0, merge_threads)

    def get_leaked_allocation_records(self, merge_threads=True):
        """The allocations alive when tracking stopped, one record per location."""
        yield from self._view(1, merge_threads)

    def get_temporary_allocation_records(self, merge_threads=True, threshold=1):
        """Allocations freed before `threshold` more allocations were made on their thread."""
        if threshold < 0:
            raise ValueError("threshold must be a non-negative integer")
        self._require_all_allocations("find temporary allocations")
        yield from self._view(2, merge_threads, threshold)

    def _temporal(self, merge_threads):
        capture = self._open_capture()
        self._require_all_allocations("get allocation history")
        for *record, intervals in capture.temporal(bool(merge_threads)):
            yield TemporalAllocationRecord(record, capture, [Interval(*i) for i in intervals])

    def get_temporal_allocation_records(self, merge_threads=True):
        """Per location, which allocations were made and freed between which snapshots."""
        yield from self._temporal(merge_threads)

    def get_temporal_high_water_mark_allocation_records(self, merge_threads=True):
        """(records, high-water mark in bytes per interval between memory snapshots): each
        record's intervals say how much its location held at the high-water marks of the
        intervals [allocated_before_snapshot, deallocated_before_snapshot)."""
        capture = self._open_capture()
        self._require_all_allocations("get allocation history")
        records, hwm = capture.temporal_hwm(bool(merge_threads))
        return (
            (TemporalAllocationRecord(r, capture, [Interval(*i) for i in intervals])
             for *r, intervals in records),
            hwm,
        )

    def get_memory_snapshots(self):
        """MemorySnapshot(time in ms since the epoch, rss, heap) per memory sample."""
        capture = self._open_capture()
        for snapshot in capture.memory_snapshots():
            yield MemorySnapshot(*snapshot)


class _LiveRecord(_StackMethods):
    """What is alive now at one location of a live session (SocketReader.get_current_snapshot):
    `n_allocations` allocations of `size` bytes in total. Live sessions fold every allocator
    into one count, reported as MALLOC; `thread_name` is the thread's name, as for the records
    of a capture file."""

    __slots__ = ("tid", "stack_id", "size", "n_allocations", "allocator", "_stacks", "_name")

    address = 0

    def __init__(self, tid, stack_id, size, n_allocations, stacks, allocator, name):
        self.tid = tid
        self.stack_id = stack_id
        self.size = size
        self.n_allocations = n_allocations
        self._stacks = stacks  # (python, native, hybrid)
        try:
            self.allocator = AllocatorType(allocator)
        except ValueError:
            self.allocator = allocator
        self._name = name

    def _trace(self, kind, max_stacks):  # the stacks came with the record: no capture to ask
        frames = self._stacks[kind]
        if max_stacks is None:
            return list(frames)
        return list(frames[:max(max_stacks, 0)])

    @property
    def thread_name(self):
        if self.tid == _MERGED_TID:
            return "merged thread"
        return self._name  # as the records of a capture file give it

    def __repr__(self):
        return ("AllocationRecord<tid=0x%x, size=%s, allocator=%r, allocations=%d, location=%s>"
                % (self.tid, size_fmt(self.size), self.allocator, self.n_allocations,
                   (self.stack_trace(1) or self.native_stack_trace(1) or ["<unknown>"])[0]))


class SocketReader:
    """Reads a live session: a program started with `memray run --live-remote` (docs/live.md).

    Use it as a context manager: entering connects to 127.0.0.1:`port` (retrying while nothing
    listens yet) and starts reading on a thread of its own; get_current_snapshot() gives what is
    alive now. The tracked process streams to one reader at a time.
    """

    def __init__(self, port):
        if not 0 < int(port) < 65536:
            raise ValueError("Invalid port: %s" % port)
        self._port = int(port)
        self._stream = None
        self._header = None
        self._status = (0, "", 0)

    def __enter__(self):
        if self._stream is not None:
            raise ValueError("Can't re-enter a SocketReader")
        self._stream = _memray.LiveStream(self._port)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if self._stream is not None:
            self._stream.close()
        self._stream = None

    def _refresh(self, timeout_ms=0):
        if self._stream is None:
            return
        self._status = self._stream.poll(timeout_ms)
        if self._header is None:
            self._header = self._stream.header()

    def _wait_for_header(self, timeout_s=None):
        """Waits until the session's header arrived (or the stream ended); True when it did."""
        import time
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._stream is not None:
            self._refresh(100)
            if self._header is not None or self._status[0] == 4:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self._header is not None

    @property
    def is_active(self):
        """True while the session streams (connected, or still connecting)."""
        self._refresh()
        return self._stream is not None and self._status[0] in (0, 1)

    @property
    def pid(self):
        self._refresh()
        return None if self._header is None else self._header["pid"]

    @property
    def command_line(self):
        self._refresh()
        return None if self._header is None else self._header["command_line"]

    @property
    def has_native_traces(self):
        self._refresh()
        return False if self._header is None else self._header["native"]

    @property
    def status(self):
        """(state, text): state is "waiting", "running", "exited", "disconnected" or "failed";
        text says why (e.g. "process exited", or what was wrong with the stream)."""
        self._refresh()
        names = ("waiting", "running", "exited", "disconnected", "failed")
        return names[self._status[0]], self._status[1]

    @property
    def dropped_blocks(self):
        """Blocks the tracked process dropped because this reader fell behind."""
        self._refresh()
        return self._status[2]

    def get_current_snapshot(self, *, merge_threads=True):
        """The allocations alive now, one record per location (per thread unless
        merge_threads). Raises ValueError outside the `with` block."""
        if self._stream is None:
            raise ValueError("Operation on a SocketReader that is not entered")
        self._refresh()
        if self._status[0] == 4:
            raise MemrayError(self._status[1])
        if self._header is None:
            return iter(())
        return iter([_LiveRecord(tid, node, size, count, (py, native, hybrid), allocator, name)
                     for tid, node, size, count, py, native, hybrid, allocator, name
                     in self._stream.snapshot(bool(merge_threads))])


def dump_all_records(file_name):
    """Prints every record of a capture (what `memray parse` prints) on stdout."""
    path = os.fspath(file_name)
    if not os.path.exists(path):
        raise IOError("No such file: %s" % path)
    import sys

    sys.stdout.flush()
    subprocess.run([memray_executable(), "parse", path], check=True)
