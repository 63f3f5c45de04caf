# The bootstrap of `memray run` for Python targets. It runs inside the target interpreter
# (3.8-3.13): `python3 -c <stub>` takes this text from the environment and compiles it under the
# file name "<memray>", so that reports can drop every frame from the root up to and including the
# last "<memray>" frame (the one-line "<string>" stub of `python3 -c` sits below it).
# argv: payload, settings, mode (file|module|code), target, script arguments...
#
# It loads the payload with ctypes and starts tracking right before the user's code, so that
# interpreter start-up and finalization stay out of the capture. Embedded into memray at build
# time (src/launch/embed_text.py); src/launch/launch.cpp starts it.
import sys


def _memray_fail(message, code=1):
    sys.stderr.write("memray: error: %s\n" % message)
    sys.stderr.flush()
    raise SystemExit(code)


def _memray_join_threads():
    # The interpreter would wait for these during finalization, after tracking stopped; wait here
    # so what they do is in the capture.
    threading = sys.modules.get("threading")
    if threading is None:
        return
    me = threading.current_thread()
    while True:
        pending = [t for t in threading.enumerate()
                   if t is not me and not t.daemon and t.is_alive()]
        if not pending:
            return
        for thread in pending:
            thread.join()


def _memray_name_threads(lib, threading):
    # Python's thread names ("MainThread", "Thread-1 (worker)") are what users know; the OS
    # name of every Python thread is the interpreter's. Hand them to the payload as threads start.
    # `threading` is imported before tracking starts: its import is not the program's.
    import ctypes
    name_thread = lib.memray_payload_name_thread
    name_thread.argtypes = [ctypes.c_char_p]
    name_thread.restype = None
    name_thread(threading.current_thread().name.encode(errors="replace"))
    original = threading.Thread._bootstrap_inner

    def _bootstrap_inner(self):
        name_thread(self.name.encode(errors="replace"))
        return original(self)

    threading.Thread._bootstrap_inner = _bootstrap_inner


def _memray_run():
    import ctypes
    import os
    import types

    payload, settings, mode, target = sys.argv[1:5]
    args = sys.argv[5:]
    old_main = sys.modules["__main__"]
    modify_path = not sys.flags.isolated and not getattr(sys.flags, "safe_path", False)

    # Everything that can fail on the user's input fails here, before tracking starts.
    code = None
    main = None
    if mode == "module":
        if modify_path:
            sys.path[0] = os.getcwd()
        import importlib.util
        import runpy  # only for -m: with what it imports, ~5 ms of a start
        top = target.partition(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            _memray_fail("No module named %r" % top)
        sys.argv = ["", *args]  # runpy puts the module's path in argv[0]
    else:
        if mode == "file":
            filename = os.path.abspath(target)
            try:
                with open(filename, "rb") as f:
                    source = f.read()
            except OSError as e:
                _memray_fail("cannot read %s: %s" % (target, e.strerror))
            if modify_path:
                sys.path[0] = os.path.dirname(os.path.realpath(target))
            sys.argv = [target, *args]
        else:
            filename = "<string>"
            source = target
            if modify_path:
                sys.path[0] = ""
            sys.argv = ["-c", *args]
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            import traceback
            traceback.print_exception(type(e), e, None)
            raise SystemExit(1)
        main = types.ModuleType("__main__")
        main.__dict__.update(__builtins__=old_main.__dict__["__builtins__"], __cached__=None)
        if mode == "file":
            import importlib.machinery
            main.__file__ = filename
            main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
        else:
            main.__loader__ = old_main.__dict__.get("__loader__")
        sys.modules["__main__"] = main

    import threading
    try:
        lib = ctypes.CDLL(payload)
    except OSError as e:
        _memray_fail("cannot load the payload: %s" % e)
    lib.memray_payload_start.argtypes = [ctypes.c_char_p]
    lib.memray_payload_start.restype = ctypes.c_int
    lib.memray_payload_stop.restype = ctypes.c_int
    lib.memray_payload_last_error.restype = ctypes.c_char_p

    if lib.memray_payload_start(settings.encode()) != 0:
        reason = lib.memray_payload_last_error() or b"unknown error"
        _memray_fail("cannot start tracking: %s" % reason.decode(errors="replace"))
    _memray_name_threads(lib, threading)
    status = 0
    try:
        if mode == "module":
            try:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            except ImportError as e:
                # The module itself could not be found (memray treats a nameless error the same).
                if e.name is None or e.name == target or target.startswith(e.name + "."):
                    sys.stderr.write("memray: error: %s\n" % e)
                    status = 1
                else:
                    raise
        else:
            exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        # Report it the way the interpreter would, without our own frames.
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == "<memray>":
            tb = tb.tb_next
        e.__traceback__ = tb  # the default hook prints the exception's own traceback
        sys.excepthook(type(e), e, tb)
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        try:
            _memray_join_threads()
        finally:
            lib.memray_payload_stop()
    if status:
        raise SystemExit(status)


_memray_run()
