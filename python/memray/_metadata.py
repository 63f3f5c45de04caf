"""`Metadata`: what FileReader.metadata and Stats.metadata describe a capture with."""

from dataclasses import dataclass
from datetime import datetime

from ._enums import FileFormat


@dataclass
class Metadata:
    start_time: datetime
    end_time: datetime
    total_allocations: int  # allocation and deallocation records
    total_frames: int
    peak_memory: int
    command_line: str
    pid: int
    main_thread_id: int
    python_allocator: str
    has_native_traces: bool
    trace_python_allocators: bool
    file_format: FileFormat


def millis_to_datetime(ms):
    """Local time of a Unix time in milliseconds, exact to the millisecond."""
    return datetime.fromtimestamp(ms // 1000).replace(microsecond=ms % 1000 * 1000)


def metadata_from(fields, peak_memory):
    """Metadata from the extension's header dict (CaptureFile.header or compute_statistics)."""
    return Metadata(
        start_time=millis_to_datetime(fields["start_time_ms"]),
        end_time=millis_to_datetime(fields["end_time_ms"]),
        total_allocations=fields["total_allocations"],
        total_frames=fields["total_frames"],
        peak_memory=peak_memory,
        command_line=fields["command_line"],
        pid=fields["pid"],
        main_thread_id=fields["main_thread_id"],
        # Recorded by the payload when tracking starts (memray's labels; "unknown" for a
        # program that is not Python or a capture older than the field).
        python_allocator=fields.get("python_allocator") or "unknown",
        has_native_traces=fields["has_native_traces"],
        trace_python_allocators=fields["trace_python_allocators"],
        file_format=FileFormat(fields["file_format"]),
    )
