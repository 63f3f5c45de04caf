"""Where a Tracker writes: a file (FileDestination) or, later, a socket (SocketDestination)."""

import pathlib
import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class Destination:
    pass


@dataclass(frozen=True)
class FileDestination(Destination):
    """A capture file at `path`. An existing file is an error unless `overwrite`.
    `compress_on_exit=False` writes uncompressed blocks (this implementation compresses while
    writing rather than at exit). `buffered` is accepted for memray compatibility: the payload
    always writes with plain write() calls."""

    path: typing.Union[pathlib.Path, str]
    overwrite: bool = False
    compress_on_exit: bool = True
    buffered: bool = False


@dataclass(frozen=True)
class SocketDestination(Destination):
    """Serve the capture on a TCP port for `memray live` (not implemented yet: a Tracker given
    one raises NotImplementedError)."""

    server_port: int
    address: str = "127.0.0.1"
