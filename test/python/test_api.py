"""The `memray` package under one interpreter (plain unittest: the pyenv interpreters have no
pytest). meson runs it once per interpreter of test/pythons.py with PYTHONPATH=build/python.

A block with known allocations is tracked by memray.Tracker and read back through every reader
method: a leaked bytearray, a temporary one and one kept by a named thread, each of a size that
nothing else allocates, made at a known line. Then the Tracker's and the reader's error cases, a
`memray run` capture read through the API against `memray stats --json`, and `python -m memray`.
"""

import contextlib
import inspect
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest
import warnings

import memray
from memray import AllocatorType

# bytearray(n) asks for n + 1 bytes (the trailing NUL).
LEAKED = 3000001
TEMPORARY = 1100003
THREAD_KEPT = 2200007
ALLOCATING = {AllocatorType.MALLOC, AllocatorType.CALLOC, AllocatorType.REALLOC}

kept = []
lines = {}


def here():
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


# As the code objects name it (meson passes the script as build/../test/...).
THIS_FILE = here.__code__.co_filename


def alloc_leaked():
    lines["leaked"] = here() + 1
    kept.append(bytearray(LEAKED))


def alloc_temporary():
    lines["temporary"] = here() + 1
    b = bytearray(TEMPORARY)
    del b


def alloc_in_thread():
    lines["thread"] = here() + 1
    kept.append(bytearray(THREAD_KEPT))


def tracked_block(path, native=False, file_format=memray.FileFormat.ALL_ALLOCATIONS):
    with memray.Tracker(path, native_traces=native, file_format=file_format):
        lines["call_temporary"] = here() + 1
        alloc_temporary()
        lines["call_leaked"] = here() + 1
        alloc_leaked()
        worker = threading.Thread(target=alloc_in_thread, name="api-worker")
        worker.start()
        worker.join()
    return worker


def native_id(thread):
    return thread.native_id if hasattr(thread, "native_id") else None


class KnownAllocations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls.tmp.name, "capture.bin")
        cls.worker = tracked_block(cls.path)
        cls.main_tid = threading.main_thread().native_id
        cls.worker_tid = cls.worker.native_id
        cls.reader = memray.FileReader(cls.path)

    @classmethod
    def tearDownClass(cls):
        cls.reader.close()
        cls.tmp.cleanup()

    def find(self, records, size):
        found = [r for r in records if r.size == size + 1]
        self.assertEqual(len(found), 1, "one record of %d bytes in %r" % (size + 1, found))
        return found[0]

    def test_metadata(self):
        md = self.reader.metadata
        self.assertIsInstance(md, memray.Metadata)
        self.assertEqual(md.pid, os.getpid())
        self.assertEqual(md.main_thread_id, self.main_tid)
        self.assertEqual(md.command_line, " ".join(sys.argv))
        self.assertFalse(md.has_native_traces)
        self.assertFalse(md.trace_python_allocators)
        self.assertEqual(md.file_format, memray.FileFormat.ALL_ALLOCATIONS)
        # Recorded by the payload when tracking started (this interpreter runs with its default
        # allocator, or PYTHONMALLOC's): one of memray's labels, the same through both APIs.
        self.assertIn(md.python_allocator, ("pymalloc", "pymalloc debug", "malloc", "mimalloc",
                                            "mimalloc debug"))
        expected = "malloc" if os.environ.get("PYTHONMALLOC", "").startswith("malloc") else None
        if expected:
            self.assertEqual(md.python_allocator, expected)
        self.assertEqual(memray.compute_statistics(self.path).metadata.python_allocator,
                         md.python_allocator)
        self.assertGreaterEqual(md.peak_memory, LEAKED + THREAD_KEPT + 2)
        self.assertLessEqual(md.start_time, md.end_time)
        records = list(self.reader.get_allocation_records())
        self.assertEqual(md.total_allocations, len(records))

    def test_every_allocation(self):
        records = list(self.reader.get_allocation_records())
        leaked = self.find(records, LEAKED)
        temporary = self.find(records, TEMPORARY)
        thread = self.find(records, THREAD_KEPT)
        for r in (leaked, temporary, thread):
            self.assertIn(r.allocator, ALLOCATING)
            self.assertEqual(r.n_allocations, 1)
            self.assertNotEqual(r.address, 0)
        # The frames above the `with` (tracked_block's callers: unittest) are not shown.
        self.assertEqual(leaked.stack_trace(), [
            ("alloc_leaked", THIS_FILE, lines["leaked"]),
            ("tracked_block", THIS_FILE, lines["call_leaked"]),
        ])
        self.assertEqual(temporary.stack_trace(), [
            ("alloc_temporary", THIS_FILE, lines["temporary"]),
            ("tracked_block", THIS_FILE, lines["call_temporary"]),
        ])
        self.assertEqual(leaked.stack_trace(max_stacks=1), [leaked.stack_trace()[0]])
        self.assertEqual(leaked.hybrid_stack_trace(), leaked.stack_trace())
        self.assertEqual(leaked.native_stack_trace(), [])
        self.assertEqual(leaked.tid, self.main_tid)
        self.assertEqual(leaked.thread_name, "MainThread")
        # Another thread keeps all of its frames.
        self.assertEqual(thread.stack_trace()[0], ("alloc_in_thread", THIS_FILE, lines["thread"]))
        self.assertGreater(len(thread.stack_trace()), 1)
        self.assertEqual(thread.tid, self.worker_tid)
        self.assertEqual(thread.thread_name, "api-worker")
        # The temporary block's free follows it; deallocations have no stack.
        after = records[records.index(temporary) + 1:]
        frees = [r for r in after if r.address == temporary.address and r.allocator == AllocatorType.FREE]
        self.assertTrue(frees, "the free of the temporary block")
        with self.assertRaises(NotImplementedError):
            frees[0].stack_trace()

    def test_high_water_mark(self):
        merged = list(self.reader.get_high_watermark_allocation_records())
        leaked = self.find(merged, LEAKED)
        thread = self.find(merged, THREAD_KEPT)
        self.assertFalse([r for r in merged if r.size == TEMPORARY + 1])
        for r in (leaked, thread):
            self.assertEqual(r.tid, 0)
            self.assertEqual(r.thread_name, "merged thread")
            self.assertEqual(r.n_allocations, 1)
            self.assertEqual(r.address, 0)
        self.assertEqual(leaked.stack_trace()[0], ("alloc_leaked", THIS_FILE, lines["leaked"]))
        self.assertEqual(len(leaked.stack_trace()), 2)
        self.assertEqual(sum(r.size for r in merged), self.reader.metadata.peak_memory)

        split = list(self.reader.get_high_watermark_allocation_records(merge_threads=False))
        self.assertEqual(self.find(split, LEAKED).tid, self.main_tid)
        self.assertEqual(self.find(split, THREAD_KEPT).tid, self.worker_tid)
        self.assertEqual(self.find(split, THREAD_KEPT).thread_name, "api-worker")
        self.assertEqual(sum(r.size for r in split), sum(r.size for r in merged))
        self.assertGreaterEqual(len(split), len(merged))

    def test_leaks(self):
        leaks = list(self.reader.get_leaked_allocation_records())
        self.find(leaks, LEAKED)
        self.find(leaks, THREAD_KEPT)
        self.assertFalse([r for r in leaks if r.size == TEMPORARY + 1])
        split = list(self.reader.get_leaked_allocation_records(merge_threads=False))
        self.assertEqual(self.find(split, THREAD_KEPT).tid, self.worker_tid)

    def test_temporary(self):
        temp = list(self.reader.get_temporary_allocation_records())
        r = self.find(temp, TEMPORARY)
        self.assertEqual(r.stack_trace()[0], ("alloc_temporary", THIS_FILE, lines["temporary"]))
        self.assertFalse([r for r in temp if r.size == LEAKED + 1])
        with self.assertRaises(ValueError):
            list(self.reader.get_temporary_allocation_records(threshold=-1))

    def test_temporal(self):
        snapshots = list(self.reader.get_memory_snapshots())
        records = list(self.reader.get_temporal_allocation_records())
        leaked = [r for r in records if any(i.n_bytes == LEAKED + 1 for i in r.intervals)]
        self.assertEqual(len(leaked), 1)
        self.assertEqual(leaked[0].stack_trace()[0], ("alloc_leaked", THIS_FILE, lines["leaked"]))
        self.assertIsInstance(leaked[0], memray.TemporalAllocationRecord)
        (interval,) = [i for i in leaked[0].intervals if i.n_bytes == LEAKED + 1]
        self.assertIsNone(interval.deallocated_before_snapshot)
        self.assertEqual(interval.n_allocations, 1)
        self.assertLessEqual(interval.allocated_before_snapshot, max(len(snapshots), 1))
        self.assertEqual(leaked[0].tid, 0)

        temporal_hwm, hwm_by_snapshot = \
            self.reader.get_temporal_high_water_mark_allocation_records()
        temporal_hwm = list(temporal_hwm)
        self.assertEqual(len(hwm_by_snapshot), len(snapshots) + 1)
        self.assertEqual(max(hwm_by_snapshot), self.reader.metadata.peak_memory)
        # Each interval's high-water mark is made of the records' shares in it.
        for k, hwm in enumerate(hwm_by_snapshot):
            shares = sum(i.n_bytes for r in temporal_hwm for i in r.intervals
                         if i.allocated_before_snapshot <= k and
                         (i.deallocated_before_snapshot is None or k < i.deallocated_before_snapshot))
            self.assertEqual(shares, hwm, "interval %d" % k)
        (leaked_hwm,) = [r for r in temporal_hwm
                         if r.stack_trace()[:1] == [("alloc_leaked", THIS_FILE, lines["leaked"])]]
        self.assertEqual([(i.deallocated_before_snapshot, i.n_allocations, i.n_bytes)
                          for i in leaked_hwm.intervals], [(None, 1, LEAKED + 1)])

    def test_memory_snapshots(self):
        md = self.reader.metadata
        start_ms = md.start_time.timestamp() * 1000
        end_ms = md.end_time.timestamp() * 1000
        for s in self.reader.get_memory_snapshots():
            self.assertIsInstance(s, memray.MemorySnapshot)
            self.assertGreater(s.rss, 0)
            self.assertLessEqual(s.heap, md.peak_memory)
            self.assertTrue(start_ms - 1 <= s.time <= end_ms + 1, (start_ms, s.time, end_ms))

    def test_statistics(self):
        stats = memray.compute_statistics(self.path)
        records = list(self.reader.get_allocation_records())
        allocations = [r for r in records if r.allocator in ALLOCATING or
                       r.allocator == AllocatorType.MMAP]
        self.assertEqual(stats.total_num_allocations, len(allocations))
        self.assertEqual(stats.total_memory_allocated, sum(r.size for r in allocations))
        self.assertEqual(stats.peak_memory_allocated, self.reader.metadata.peak_memory)
        self.assertEqual(stats.metadata.peak_memory, self.reader.metadata.peak_memory)
        self.assertEqual(sum(stats.allocation_count_by_allocator.values()), len(allocations))
        self.assertEqual(stats.allocation_count_by_size.get(LEAKED + 1), 1)
        self.assertEqual(stats.top_locations_by_size[0],
                         (("alloc_leaked", THIS_FILE, lines["leaked"]), LEAKED + 1))
        self.assertLessEqual(len(stats.top_locations_by_count), 5)
        self.assertEqual(len(memray.compute_statistics(self.path, num_largest=1)
                             .top_locations_by_size), 1)

    def test_reader_is_a_context_manager(self):
        with memray.FileReader(self.path) as r:
            self.assertFalse(r.closed)
            records = r.get_allocation_records()
        self.assertTrue(r.closed)
        with self.assertRaisesRegex(ValueError, "closed FileReader"):
            list(records)
        with self.assertRaisesRegex(ValueError, "closed FileReader"):
            r.metadata
        for method in (r.get_high_watermark_allocation_records, r.get_leaked_allocation_records,
                       r.get_temporary_allocation_records, r.get_temporal_allocation_records,
                       r.get_memory_snapshots):
            with self.assertRaisesRegex(ValueError, "closed FileReader"):
                list(method())

    def test_records_streamed(self):
        # A generator from the file, not a list built first.
        it = self.reader.get_allocation_records()
        self.assertTrue(inspect.isgenerator(it))
        first = next(it)
        self.assertIsInstance(first, memray.AllocationRecord)
        it.close()


def churn(seconds):
    """Allocates and frees for `seconds` (a workload spanning several 10 ms memory samples)."""
    import time
    end = time.monotonic() + seconds
    held = []
    while time.monotonic() < end:
        held.append(bytearray(TEMPORARY))
        if len(held) > 3:
            held.pop(0)


class Aggregated(unittest.TestCase):
    """Tracker(file_format=AGGREGATED_ALLOCATIONS): the same known allocations as a full capture
    of the same block, in the high-water-mark and leak views; what needs every allocation is
    refused with memray's messages."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.full = os.path.join(cls.tmp.name, "full.bin")
        cls.agg = os.path.join(cls.tmp.name, "agg.bin")
        tracked_block(cls.full)
        cls.worker = tracked_block(cls.agg, file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def known(self, records):
        sizes = {LEAKED + 1, THREAD_KEPT + 1, TEMPORARY + 1}
        return sorted((r.size, r.n_allocations, r.tid if r.tid == 0 else r.thread_name,
                       tuple(r.stack_trace())) for r in records if r.size in sizes)

    def test_metadata(self):
        with memray.FileReader(self.agg) as r:
            self.assertEqual(r.metadata.file_format, memray.FileFormat.AGGREGATED_ALLOCATIONS)
            self.assertGreaterEqual(r.metadata.peak_memory, LEAKED + THREAD_KEPT)
            hwm = list(r.get_high_watermark_allocation_records())
            self.assertEqual(sum(x.size for x in hwm), r.metadata.peak_memory)

    def test_same_views_as_a_full_capture(self):
        with memray.FileReader(self.full) as full, memray.FileReader(self.agg) as agg:
            for merge in (True, False):
                a = self.known(full.get_high_watermark_allocation_records(merge_threads=merge))
                b = self.known(agg.get_high_watermark_allocation_records(merge_threads=merge))
                self.assertEqual(len(a), 2)
                self.assertEqual(a, b)
                a = self.known(full.get_leaked_allocation_records(merge_threads=merge))
                b = self.known(agg.get_leaked_allocation_records(merge_threads=merge))
                self.assertEqual(a, b)
                self.assertTrue(a)
            self.assertTrue(list(agg.get_memory_snapshots()))

    def test_refusals(self):
        with memray.FileReader(self.agg) as r:
            with self.assertRaisesRegex(NotImplementedError,
                                        "Can't find temporary allocations using a pre-aggregated"):
                list(r.get_temporary_allocation_records())
            with self.assertRaisesRegex(NotImplementedError,
                                        "Can't get allocation history using a pre-aggregated"):
                list(r.get_temporal_allocation_records())
            with self.assertRaisesRegex(NotImplementedError, "pre-aggregated capture file"):
                list(r.get_allocation_records())
        with self.assertRaisesRegex(NotImplementedError,
                                    "Can't compute statistics using a pre-aggregated capture file"):
            memray.compute_statistics(self.agg)


class TemporalDownsampled(unittest.TestCase):
    def test_high_water_mark_by_interval(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "churn.bin")
            with memray.Tracker(path):
                churn(0.2)
            for max_records in (10000, 5, 2):
                with memray.FileReader(path, max_memory_records=max_records) as r:
                    snapshots = list(r.get_memory_snapshots())
                    self.assertLessEqual(len(snapshots), max_records)
                    records, hwm = r.get_temporal_high_water_mark_allocation_records(
                        merge_threads=False)
                    records = list(records)
                    self.assertEqual(len(hwm), len(snapshots) + 1)
                    self.assertEqual(max(hwm), r.metadata.peak_memory)
                    for k, peak in enumerate(hwm):
                        shares = sum(
                            i.n_bytes for x in records for i in x.intervals
                            if i.allocated_before_snapshot <= k and
                            (i.deallocated_before_snapshot is None or
                             k < i.deallocated_before_snapshot))
                        self.assertEqual(shares, peak, "max %d, interval %d" % (max_records, k))
            # More than a few samples, so that 5 and 2 really merged some.
            with memray.FileReader(path) as r:
                self.assertGreater(len(list(r.get_memory_snapshots())), 5)


class NativeTraces(unittest.TestCase):
    def test_hybrid_stacks(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "native.bin")
            tracked_block(path, native=True)
            with memray.FileReader(path) as r:
                self.assertTrue(r.metadata.has_native_traces)
                records = list(r.get_high_watermark_allocation_records())
                (leaked,) = [x for x in records if x.size == LEAKED + 1]
                python = leaked.stack_trace()
                self.assertEqual(python, [
                    ("alloc_leaked", THIS_FILE, lines["leaked"]),
                    ("tracked_block", THIS_FILE, lines["call_leaked"]),
                ])
                native = leaked.native_stack_trace()
                self.assertGreater(len(native), 2)
                self.assertEqual(len(leaked.native_stack_trace(max_stacks=2)), 2)
                hybrid = leaked.hybrid_stack_trace()
                # Python frames in order, native frames inside them, nothing outside the with.
                self.assertEqual([f for f in hybrid if f in python], python)
                self.assertEqual(hybrid[-1], python[-1])
                self.assertGreater(len(hybrid), len(python))


# UNIT * PY_BLOB asks PyObject_Malloc for 33 + PY_BLOB bytes (bytes header and NUL); UNIT is a
# variable so that the compiler cannot fold the product into a constant.
UNIT = b"\x03"
PY_BLOB = 211
PY_OBJECTS = 500


def make_py_objects(out):
    lines["py_objects"] = here() + 2
    for _ in range(PY_OBJECTS):
        out.append(UNIT * PY_BLOB)


def python_allocator_tables():
    """What PyMem_GetAllocator says for the RAW, MEM and OBJ domains."""
    import ctypes

    class PyMemAllocatorEx(ctypes.Structure):
        _fields_ = [(n, ctypes.c_void_p) for n in ("ctx", "malloc", "calloc", "realloc", "free")]

    get = ctypes.pythonapi.PyMem_GetAllocator
    get.restype = None
    get.argtypes = [ctypes.c_int, ctypes.POINTER(PyMemAllocatorEx)]
    tables = []
    for domain in (0, 1, 2):
        a = PyMemAllocatorEx()
        get(domain, ctypes.byref(a))
        tables.append((a.ctx, a.malloc, a.calloc, a.realloc, a.free))
    return tables


class TracePythonAllocators(unittest.TestCase):
    """Tracker(trace_python_allocators=True): each object made in the block is one PYMALLOC_MALLOC
    record at its line, the allocators are replaced in the block and exactly restored after it."""

    def test_objects_counted_and_allocators_restored(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "pyalloc.bin")
            before = python_allocator_tables()
            objects = []
            with memray.Tracker(path, trace_python_allocators=True):
                during = python_allocator_tables()
                make_py_objects(objects)
                del objects[:100]
            after = python_allocator_tables()
            self.assertEqual(during[0], before[0], "RAW domain untouched")
            self.assertNotEqual(during[1:], before[1:], "MEM and OBJ domains hooked")
            self.assertEqual(after, before, "allocators exactly restored")
            with memray.FileReader(path) as reader:
                self.assertTrue(reader.metadata.trace_python_allocators)
                records = list(reader.get_allocation_records())
                made = [r for r in records
                        if r.allocator == AllocatorType.PYMALLOC_MALLOC and r.size == 33 + PY_BLOB
                        and r.stack_trace()[:1] == [("make_py_objects", THIS_FILE,
                                                     lines["py_objects"])]]
                self.assertEqual(len(made), PY_OBJECTS)
                freed = {r.address for r in records if r.allocator == AllocatorType.PYMALLOC_FREE}
                self.assertEqual(sum(1 for r in made[:100] if r.address in freed), 100)
                # Each object once: not also as MALLOC underneath.
                self.assertFalse([r for r in records if r.allocator == AllocatorType.MALLOC
                                  and r.size == 33 + PY_BLOB])
                leaks = [r for r in reader.get_leaked_allocation_records()
                         if r.allocator == AllocatorType.PYMALLOC_MALLOC
                         and r.stack_trace()[:1] == [("make_py_objects", THIS_FILE,
                                                      lines["py_objects"])]]
                self.assertEqual(sum(r.n_allocations for r in leaks), PY_OBJECTS - 100)
                self.assertEqual(sum(r.size for r in leaks), (PY_OBJECTS - 100) * (33 + PY_BLOB))

    def test_without_the_option_no_pymalloc_records(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "plain.bin")
            objects = []
            with memray.Tracker(path):
                make_py_objects(objects)
            with memray.FileReader(path) as reader:
                self.assertFalse(reader.metadata.trace_python_allocators)
                self.assertFalse([r for r in reader.get_allocation_records()
                                  if r.allocator.name.startswith("PYMALLOC")])


class TempDirCase(unittest.TestCase):
    """A test with a fresh temporary directory; path(name) is a file in it."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)


class ReaderErrors(TempDirCase):
    def test_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "nope.bin"):
            memray.FileReader(self.path("nope.bin"))
        with self.assertRaises(FileNotFoundError):
            memray.compute_statistics(self.path("nope.bin"))

    def test_foreign_and_empty_files(self):
        for name, data in (("foreign.bin", b"this is not a capture at all\n" * 10),
                           ("empty.bin", b"")):
            with open(self.path(name), "wb") as f:
                f.write(data)
            with self.assertRaises(memray.MemrayError) as ctx:
                memray.FileReader(self.path(name))
            self.assertIn(name, str(ctx.exception))

    def test_truncated_file(self):
        path = self.path("whole.bin")
        with memray.Tracker(path):
            data = [bytearray(LEAKED) for _ in range(3)]
        del data
        with open(path, "rb") as f:
            whole = f.read()
        for cut in (len(whole) // 2, len(whole) - 3, 20):
            cut_path = self.path("cut-%d.bin" % cut)
            with open(cut_path, "wb") as f:
                f.write(whole[:cut])
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    with memray.FileReader(cut_path) as r:
                        list(r.get_allocation_records())
                        list(r.get_high_watermark_allocation_records())
                self.assertTrue([w for w in caught if "incomplete" in str(w.message)])
            except memray.MemrayError as e:
                self.assertIn(cut_path, str(e))  # a cut inside the header


class TrackerErrors(TempDirCase):
    def test_exactly_one_destination(self):
        with self.assertRaisesRegex(TypeError, "Exactly one"):
            memray.Tracker()
        with self.assertRaisesRegex(TypeError, "Exactly one"):
            memray.Tracker(self.path("a.bin"), destination=memray.FileDestination(self.path("b")))
        with self.assertRaises(TypeError):
            memray.Tracker(destination="not a destination")

    def test_not_yet_supported(self):
        p = self.path("x.bin")
        for kwargs in ({"memory_interval_ms": 50},):
            with self.assertRaises(NotImplementedError, msg=repr(kwargs)):
                memray.Tracker(p, **kwargs)
        with self.assertRaises(NotImplementedError):
            memray.Tracker(destination=memray.SocketDestination(server_port=12345))
        with self.assertRaises(ValueError):  # SocketReader works (test_socket_reader.py)
            memray.SocketReader(0)
        self.assertFalse(os.path.exists(p))

    def test_existing_file_and_overwrite(self):
        p = self.path("exists.bin")
        with open(p, "w") as f:
            f.write("old")
        with self.assertRaises(FileExistsError):
            memray.Tracker(p)
        with memray.Tracker(destination=memray.FileDestination(p, overwrite=True)):
            kept.append(bytearray(LEAKED))
        with memray.FileReader(p) as r:
            self.assertTrue([x for x in r.get_leaked_allocation_records() if x.size == LEAKED + 1])

    def test_unwritable_destination(self):
        with self.assertRaises(FileNotFoundError):
            memray.Tracker(self.path("no/such/dir/x.bin"))
        if os.geteuid() != 0:
            os.chmod(self.tmp.name, 0o500)
            self.addCleanup(os.chmod, self.tmp.name, 0o700)
            with self.assertRaises(PermissionError):
                memray.Tracker(self.path("x.bin"))

    def test_one_active_tracker(self):
        outer = memray.Tracker(self.path("outer.bin"))
        inner = memray.Tracker(self.path("inner.bin"))
        with outer:
            with self.assertRaisesRegex(RuntimeError, "No more than one Tracker"):
                with inner:
                    pass
        self.assertFalse(os.path.exists(self.path("inner.bin")))
        # A Tracker is entered once; a fresh one works after the first ended.
        with self.assertRaisesRegex(RuntimeError, "stale"):
            with outer:
                pass
        with inner:
            pass
        with memray.FileReader(self.path("inner.bin")) as r:
            r.metadata

    def test_uncompressed(self):
        p = self.path("raw.bin")
        with memray.Tracker(destination=memray.FileDestination(p, compress_on_exit=False)):
            kept.append(bytearray(LEAKED))
        with memray.FileReader(p) as r:
            self.assertTrue([x for x in r.get_leaked_allocation_records() if x.size == LEAKED + 1])

    def test_follow_fork(self):
        # The child of os.fork() records into <file>.<child pid> with follow_fork=True, exactly
        # its own allocations after the fork; without it, the child writes nothing.
        parent_size, child_size = 3100013, 3100019
        for follow in (True, False):
            # Named as memray names files: the parent's trailing ".<pid>" is replaced.
            stem = self.path("fork-%s.bin" % follow)
            p = "%s.%d" % (stem, os.getpid())
            with memray.Tracker(p, follow_fork=follow):
                kept.append(bytearray(parent_size - 1))
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    for _ in range(3):
                        b = bytearray(child_size - 1)
                        del b
                    os._exit(0)
                _, status = os.waitpid(pid, 0)
                self.assertEqual(status, 0)
            child = "%s.%d" % (stem, pid)

            def sizes(path):
                with memray.FileReader(path) as r:
                    return r.metadata.pid, [x.size for x in r.get_allocation_records()
                                            if x.allocator in ALLOCATING]
            _, in_parent = sizes(p)
            self.assertEqual(in_parent.count(parent_size), 1, follow)
            self.assertEqual(in_parent.count(child_size), 0, follow)
            self.assertEqual(sorted(os.listdir(self.tmp.name)).count(os.path.basename(child)),
                             1 if follow else 0)
            if follow:
                child_pid, in_child = sizes(child)
                self.assertEqual(child_pid, pid)
                self.assertEqual(in_child.count(child_size), 3)
                self.assertEqual(in_child.count(parent_size), 0)

    def test_follow_fork_multiprocessing(self):
        import multiprocessing
        worker_size = 3100027
        p = self.path("mp.bin")
        ctx = multiprocessing.get_context("fork")
        with memray.Tracker(p, follow_fork=True):
            proc = ctx.Process(target=_allocate_twice, args=(worker_size,))
            proc.start()
            proc.join()
        self.assertEqual(proc.exitcode, 0)
        with memray.FileReader("%s.%d" % (p, proc.pid)) as r:
            self.assertEqual(r.metadata.pid, proc.pid)
            got = [x.size for x in r.get_allocation_records() if x.allocator in ALLOCATING]
        self.assertEqual(got.count(worker_size), 2)
        with memray.FileReader(p) as r:
            got = [x.size for x in r.get_allocation_records() if x.allocator in ALLOCATING]
        self.assertEqual(got.count(worker_size), 0)


def _allocate_twice(size):
    for _ in range(2):
        b = bytearray(size - 1)
        del b


class MemrayCommand(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        from memray._paths import memray_executable
        self.memray = memray_executable()
        if not os.access(self.memray, os.X_OK):
            self.skipTest("no memray command at %s" % self.memray)

    def run_cmd(self, args):
        # The package as this test imported it, whatever the working directory.
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(memray.__file__)))
        return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=self.tmp.name, env=env, timeout=120)

    def test_python_m_memray_is_the_command(self):
        direct = self.run_cmd([self.memray, "--version"])
        via = self.run_cmd([sys.executable, "-m", "memray", "--version"])
        self.assertEqual(via.returncode, 0)
        self.assertEqual(via.stdout, direct.stdout)
        bad_direct = self.run_cmd([self.memray, "stats", "missing.bin"])
        bad_via = self.run_cmd([sys.executable, "-m", "memray", "stats", "missing.bin"])
        self.assertNotEqual(bad_direct.returncode, 0)
        self.assertEqual(bad_via.returncode, bad_direct.returncode)
        self.assertEqual(bad_via.stderr, bad_direct.stderr)

    def test_no_tracker_inside_memray_run(self):
        script = os.path.join(self.tmp.name, "nested.py")
        with open(script, "w") as f:
            f.write("import memray\n"
                    "try:\n"
                    "    with memray.Tracker('inner.bin'):\n"
                    "        pass\n"
                    "except RuntimeError as e:\n"
                    "    print('refused:', e)\n")
        p = self.run_cmd([sys.executable, "-m", "memray", "run", "-q", "-o", "outer.bin", script])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertIn(b"refused: No more than one Tracker instance can be active", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "inner.bin")))
        with memray.FileReader(os.path.join(self.tmp.name, "outer.bin")) as r:
            self.assertGreater(r.metadata.total_allocations, 0)

    def test_memray_attach_capture(self):
        script = os.path.join(self.tmp.name, "service.py")
        with open(script, "w") as f:
            f.write("import sys\n"
                    "kept = []\n"
                    "def handle():\n"
                    "    kept.append(bytearray(%d))\n"
                    "print('ready', flush=True)\n"
                    "for line in sys.stdin:\n"
                    "    handle()\n"
                    "    print('done', flush=True)\n" % LEAKED)
        target = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, cwd=self.tmp.name)
        try:
            self.assertEqual(target.stdout.readline(), b"ready\n")
            capture = os.path.join(self.tmp.name, "attached.bin")
            p = self.run_cmd([self.memray, "attach", "-o", capture, str(target.pid)])
            if p.returncode != 0:
                err = p.stderr.decode(errors="replace")
                if "ptrace" in err.lower() or "not permitted" in err.lower():
                    self.skipTest("memray attach cannot trace here: " + err.strip())
                self.fail(err)
            target.stdin.write(b"go\n")
            target.stdin.flush()
            self.assertEqual(target.stdout.readline(), b"done\n")
            p = self.run_cmd([self.memray, "detach", str(target.pid)])
            self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        finally:
            target.stdin.close()
            target.wait(timeout=60)
        with memray.FileReader(capture) as r:
            self.assertEqual(r.metadata.pid, target.pid)
            leaks = [x for x in r.get_leaked_allocation_records() if x.size == LEAKED + 1]
            self.assertEqual(len(leaks), 1)
            self.assertEqual(leaks[0].stack_trace(), [("handle", script, 4), ("<module>", script, 7)])

    def test_memray_run_capture_matches_stats(self):
        script = os.path.join(self.tmp.name, "target.py")
        with open(script, "w") as f:
            f.write("import threading\n"
                    "kept = []\n"
                    "for _ in range(3): kept.append(bytearray(%d))\n"
                    "def work():\n"
                    "    kept.append(bytearray(%d))\n"
                    "t = threading.Thread(target=work); t.start(); t.join()\n"
                    % (LEAKED, THREAD_KEPT))
        capture = os.path.join(self.tmp.name, "run.bin")
        # `python -m memray run` runs the script under this interpreter.
        p = self.run_cmd([sys.executable, "-m", "memray", "run", "-q", "-o", capture, script])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        p = self.run_cmd([self.memray, "stats", "--json", "-o", "stats.json", capture])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        with open(os.path.join(self.tmp.name, "stats.json")) as f:
            cli = json.load(f)

        stats = memray.compute_statistics(capture)
        self.assertEqual(stats.total_num_allocations, cli["total_num_allocations"])
        self.assertEqual(stats.total_memory_allocated, cli["total_bytes_allocated"])
        self.assertEqual(stats.allocation_count_by_allocator, cli["allocator_type_distribution"])
        self.assertEqual(stats.peak_memory_allocated, cli["metadata"]["peak_memory"])
        self.assertEqual(stats.metadata.total_allocations, cli["metadata"]["total_allocations"])
        self.assertEqual([n for _, n in stats.top_locations_by_size],
                         [e["size"] for e in cli["top_allocations_by_size"]])
        self.assertEqual([":".join(map(str, loc)) for loc, _ in stats.top_locations_by_size
                          if loc[0] != "<unknown>"],
                         [e["location"] for e in cli["top_allocations_by_size"]
                          if e["location"] != "<stack trace unavailable>"])

        with memray.FileReader(capture) as r:
            md = r.metadata
            self.assertEqual(md.peak_memory, cli["metadata"]["peak_memory"])
            self.assertEqual(md.pid, cli["metadata"]["pid"])
            self.assertEqual(md.total_frames, cli["metadata"]["total_frames"])
            records = list(r.get_allocation_records())
            allocations = [x for x in records if x.allocator not in
                           (AllocatorType.FREE, AllocatorType.MUNMAP, AllocatorType.PYMALLOC_FREE)]
            self.assertEqual(len(allocations), cli["total_num_allocations"])
            self.assertEqual(len(records), cli["metadata"]["total_allocations"])
            big = [x for x in allocations if x.size == LEAKED + 1]
            self.assertEqual(len(big), 3)
            self.assertEqual(big[0].stack_trace(), [("<module>", script, 3)])
            hwm = [x for x in r.get_high_watermark_allocation_records() if x.size > THREAD_KEPT]
            self.assertEqual(sorted((x.size, x.n_allocations) for x in hwm),
                             [(THREAD_KEPT + 1, 1), (3 * (LEAKED + 1), 3)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
