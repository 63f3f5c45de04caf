"""compute_statistics: the numbers `memray stats` prints, as memray's Stats."""

import os
from dataclasses import dataclass, field
from typing import List, Tuple

from . import _memray
from ._metadata import Metadata, metadata_from

_UNKNOWN_LOCATION = ("<unknown>", "<unknown>", 0)


@dataclass
class Stats:
    metadata: Metadata
    total_num_allocations: int
    total_memory_allocated: int
    peak_memory_allocated: int
    allocation_count_by_size: dict
    allocation_count_by_allocator: dict
    top_locations_by_size: list
    top_locations_by_count: list
    top_modules_by_allocation_size: List[Tuple[str, int, int]] = field(default_factory=list)
    top_modules_by_allocation_count: List[Tuple[str, int, int]] = field(default_factory=list)


def _location(text):
    # "function:file:line" as the stats report names a location.
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return _UNKNOWN_LOCATION
    return (parts[0], parts[1], int(parts[2]))


def compute_statistics(file_name, *, report_progress=False, num_largest=5):
    s = _memray.compute_statistics(os.fspath(file_name), num_largest, report_progress)
    return Stats(
        # The stats report numbers formats 0/1; memray's FileFormat is 1/2.
        metadata=metadata_from(dict(s, file_format=s["file_format"] + 1),
                               s["peak_memory_allocated"]),
        total_num_allocations=s["total_num_allocations"],
        total_memory_allocated=s["total_memory_allocated"],
        peak_memory_allocated=s["peak_memory_allocated"],
        allocation_count_by_size=s["allocation_count_by_size"],
        allocation_count_by_allocator=s["allocation_count_by_allocator"],
        top_locations_by_size=[(_location(l), n) for l, n in s["top_locations_by_size"]],
        top_locations_by_count=[(_location(l), n) for l, n in s["top_locations_by_count"]],
        top_modules_by_allocation_size=s["top_modules_by_allocation_size"],
        top_modules_by_allocation_count=s["top_modules_by_allocation_count"],
    )
