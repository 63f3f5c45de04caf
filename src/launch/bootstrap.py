# The bootstrap of `memray run` for Python targets. It runs inside the target interpreter:
# `python3 -c <stub>` takes this text from the environment and compiles it under the file name
# "<memray>", so that reports can drop every frame from the root up to and including the last
# "<memray>" frame (the one-line "<string>" stub of `python3 -c` sits below it).
# argv: payload, settings, banner, mode (file|module|code), target, script arguments...
#
# It first refuses what memray refuses (an interpreter the payload cannot track, a file or -c code
# that does not parse) and only then prints the banner ("Writing profile results into ...") that
# the CLI hands it, so a refused run prints nothing else; checking here, not in a separate run of
# the interpreter, saves a whole interpreter start. With an empty payload it only checks (the
# CLI's check before the live view takes the terminal).
# Then it loads the payload with ctypes and starts tracking right before the user's code, so that
# interpreter start-up and finalization stay out of the capture. Embedded into memray at build
# time (src/launch/embed_text.py); src/launch/launch.cpp starts it.
#
# This text must stay parseable by Python 2.7 (no `*` unpacking in displays, no f-strings): an old
# interpreter has to get as far as the version check to be refused with a clear message.
import sys

# The versions src/payload/python_stack.cpp reads frames of.
_MEMRAY_OLDEST = (3, 8)
_MEMRAY_NEWEST = (3, 13)


def _memray_fail(message, code=1):
    sys.stderr.write("memray: error: %s\n" % message)
    sys.stderr.flush()
    raise SystemExit(code)


def _memray_check_version():
    version = tuple(sys.version_info[:2])
    if _MEMRAY_OLDEST <= version <= _MEMRAY_NEWEST:
        return
    _memray_fail("unsupported Python %d.%d (%s): memray tracks Python %d.%d to %d.%d; choose "
                 "another interpreter with --python"
                 % (version + (sys.executable,) + _MEMRAY_OLDEST + _MEMRAY_NEWEST))


def _memray_compile(source, filename):
    # memray refuses what does not parse (its test is ast.parse); code that parses but does not
    # compile (`return` at module level) is the program's own error, reported as the interpreter
    # would. The common case compiles once; only a failure parses again to tell the two apart.
    try:
        return compile(source, filename, "exec", 0, True)
    except (SyntaxError, ValueError) as e:
        error = e
    try:
        compile(source, filename, "exec", 0x400, True)  # PyCF_ONLY_AST, what ast.parse passes
    except (SyntaxError, ValueError):
        _memray_fail("Only valid Python files or commands can be executed under memray")
    import traceback
    traceback.print_exception(type(error), error, None)
    raise SystemExit(1)


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


def _memray_name_threads(lib):
    # Python's thread names ("MainThread", "Thread-1 (worker)") are what users know; the OS name
    # of every Python thread is the interpreter's. Each thread hands its name to the payload as
    # it starts. `threading` is not imported for this (~8 ms of a start, and its import would be
    # the program's): until the program imports it, the start functions of `_thread` that it will
    # bind are wrapped; a `threading` that is already loaded (by site or a .pth file) is patched.
    import ctypes
    set_name = lib.memray_payload_name_thread
    set_name.argtypes = [ctypes.c_char_p]
    set_name.restype = None

    def name_thread(name):
        set_name(name.encode(errors="replace"))

    threading = sys.modules.get("threading")
    if threading is not None:
        name_thread(threading.current_thread().name)
        original = threading.Thread._bootstrap_inner

        def _bootstrap_inner(self):
            name_thread(self.name)
            return original(self)

        threading.Thread._bootstrap_inner = _bootstrap_inner
        return
    name_thread("MainThread")
    import _thread

    def named(function):
        # threading starts a Thread with its bound _bootstrap; anything else passes unchanged.
        thread = getattr(function, "__self__", None)
        threading = sys.modules.get("threading")
        if threading is None or not isinstance(thread, threading.Thread):
            return function

        def bootstrap(*args, **kwargs):
            name_thread(thread.name)
            return function(*args, **kwargs)

        return bootstrap

    # 3.8-3.12: start_new_thread(function, args, kwargs); 3.13: start_joinable_thread(function,
    # handle=, daemon=).
    def wrapped(start):
        def wrapper(function, *args, **kwargs):
            return start(named(function), *args, **kwargs)
        return wrapper

    for attr in ("start_new_thread", "start_joinable_thread"):
        start = getattr(_thread, attr, None)
        if start is not None:
            setattr(_thread, attr, wrapped(start))


def _memray_run():
    _memray_check_version()
    import os

    payload, settings, banner, mode, target = sys.argv[1:6]
    args = sys.argv[6:]
    old_main = sys.modules["__main__"]
    modify_path = not sys.flags.isolated and not getattr(sys.flags, "safe_path", False)

    # Everything that can fail on the user's input fails here, before tracking starts.
    code = None
    main = None
    if mode == "file":
        filename = os.path.abspath(target)
        try:
            with open(filename, "rb") as f:
                source = f.read()
        except OSError as e:
            _memray_fail("cannot read %s: %s" % (target, e.strerror))
        code = _memray_compile(source, filename)
    elif mode == "code":
        filename = "<string>"
        code = _memray_compile(target, filename)
    if not payload:
        return  # only checking
    if banner and sys.stdout is not None:
        try:
            sys.stdout.write(banner + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout: the CLI's own print would have failed quietly too

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
        sys.argv = [""] + args  # runpy puts the module's path in argv[0]
    else:
        if mode == "file":
            if modify_path:
                sys.path[0] = os.path.dirname(os.path.realpath(target))
            sys.argv = [target] + args
        else:
            if modify_path:
                sys.path[0] = ""
            sys.argv = ["-c"] + args
        import types
        main = types.ModuleType("__main__")
        main.__dict__.update(__builtins__=old_main.__dict__["__builtins__"], __cached__=None)
        if mode == "file":
            import importlib.machinery
            main.__file__ = filename
            main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
        else:
            main.__loader__ = old_main.__dict__.get("__loader__")
        sys.modules["__main__"] = main

    import ctypes
    try:
        lib = ctypes.CDLL(payload)
    except OSError as e:
        _memray_fail("cannot load the payload: %s" % e)
    lib.memray_payload_start.argtypes = [ctypes.c_char_p]
    lib.memray_payload_start.restype = ctypes.c_int
    lib.memray_payload_stop.restype = ctypes.c_int
    lib.memray_payload_last_error.restype = ctypes.c_char_p

    # Every stack of the program passes through this function's frame; the walk stops there.
    lib.memray_payload_python_root.argtypes = [ctypes.c_void_p]
    lib.memray_payload_python_root(id(sys._getframe().f_code))
    if lib.memray_payload_start(settings.encode()) != 0:
        reason = lib.memray_payload_last_error() or b"unknown error"
        _memray_fail("cannot start tracking: %s" % reason.decode(errors="replace"))
    _memray_name_threads(lib)
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
