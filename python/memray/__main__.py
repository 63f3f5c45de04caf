"""`python -m memray ARGS` is `memray ARGS`: the memray command replaces this interpreter
(same arguments, same exit code). `run` gets `--python` set to this interpreter unless given,
so that `python3.X -m memray run script.py` runs the script under python3.X as memray does."""

import os
import sys

from ._paths import memray_executable


def command_line(args, python=sys.executable):
    args = list(args)
    if args[:1] == ["run"] and python and not any(
        a == "--python" or a.startswith("--python=") for a in args
    ):
        args[1:1] = ["--python", python]
    return args


def main(args=None):
    exe = memray_executable()
    argv = [exe] + command_line(sys.argv[1:] if args is None else args)
    try:
        os.execv(exe, argv)
    except OSError as e:
        sys.stderr.write(
            "memray: error: cannot run %s: %s (set MEMRAY_EXECUTABLE to the memray command)\n"
            % (exe, e.strerror)
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
