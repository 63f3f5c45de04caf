"""The package's exception types (memray's names)."""


class MemrayError(Exception):
    """Base class of the errors this package raises itself (e.g. a file that is not a capture)."""


class MemrayCommandError(MemrayError):
    """An error of a command-line command; `exit_code` is what the command exits with."""

    def __init__(self, *args, exit_code):
        super().__init__(*args)
        self.exit_code = exit_code
