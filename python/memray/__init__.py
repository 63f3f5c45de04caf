"""memray: a memory profiler for Python (this is the C++ implementation's package).

    with memray.Tracker("capture.bin"):
        ...
    with memray.FileReader("capture.bin") as reader:
        for record in reader.get_high_watermark_allocation_records():
            print(record.size, record.stack_trace())

docs/python-api.md lists what is supported.
"""

from . import _memray
from ._config import VERSION as __version__
from ._destination import Destination, FileDestination, SocketDestination
from ._enums import AllocatorType, FileFormat, PymallocDomain, SymbolicSupport
from ._errors import MemrayCommandError, MemrayError
from ._ipython import load_ipython_extension
from ._metadata import Metadata
from ._reader import (
    AllocationRecord,
    FileReader,
    Interval,
    MemorySnapshot,
    SocketReader,
    TemporalAllocationRecord,
    dump_all_records,
    size_fmt,
)
from ._stats import Stats, compute_statistics
from ._tracker import Tracker, set_log_level, start_thread_trace


def get_symbolic_support():
    """How well native frames of this interpreter resolve (SymbolicSupport)."""
    return SymbolicSupport(_memray.get_symbolic_support())


__all__ = [
    "AllocationRecord",
    "AllocatorType",
    "Destination",
    "FileDestination",
    "FileFormat",
    "FileReader",
    "Interval",
    "MemorySnapshot",
    "MemrayCommandError",
    "MemrayError",
    "Metadata",
    "PymallocDomain",
    "SocketDestination",
    "SocketReader",
    "Stats",
    "SymbolicSupport",
    "TemporalAllocationRecord",
    "Tracker",
    "__version__",
    "compute_statistics",
    "dump_all_records",
    "get_symbolic_support",
    "load_ipython_extension",
    "set_log_level",
    "size_fmt",
    "start_thread_trace",
]
