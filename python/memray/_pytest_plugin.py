"""The pytest plugin (pytest-memray's options and markers, here in the memray package itself).

    pytest --memray                      # the tests that allocate most, at their high-water mark
    @pytest.mark.limit_memory("24 MB")   # fail when the test's high-water mark reaches 24 MiB
    @pytest.mark.limit_leaks("1 MB", filter_fn=...)  # fail when one stack leaks 1 MiB or more

A test runs under memray.Tracker when --memray (or the `memray` ini option) is given or when it
carries one of the markers; its capture is read after the call. pytest finds the plugin through
the `pytest11` entry point of the package's metadata (memray.dist-info); `-p no:memray` turns it
off.
"""

import functools
import inspect
import os
import re
import shutil
import tempfile

import pytest

from ._reader import FileReader
from ._tracker import Tracker, await_tracked, call_tracked

_MARKERS = ("limit_memory", "limit_leaks")
_SIZE = re.compile(r"^\s*(\+?\d*\.\d+|\+?\d+)\s*([KMGTP]?B)\s*$", re.IGNORECASE)
_MULTIPLIER = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}
_TOP_FUNCTIONS = 5


def parse_size(text):
    """"24 MB" -> bytes (1024-based, as pytest-memray)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError("Invalid memory size format: %r (expected e.g. '24 MB')" % (text,))
    return float(m.group(1)) * _MULTIPLIER[m.group(2).upper()]


def binary_size(n):
    """Bytes with 1024-based units, one decimal ("24.0MiB")."""
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"):
        if abs(n) < 1024.0:
            return "%3.1f%sB" % (n, unit)
        n /= 1024.0
    return "%.1fYiB" % n


class StackFrame:
    """A frame given to a limit_leaks filter_fn: function, filename, lineno."""

    __slots__ = ("function", "filename", "lineno")

    def __init__(self, function, filename, lineno):
        self.function, self.filename, self.lineno = function, filename, lineno

    def __repr__(self):
        return "StackFrame(%r, %r, %r)" % (self.function, self.filename, self.lineno)


class Stack:
    """The stack a limit_leaks filter_fn decides on: `frames`, most recent first."""

    __slots__ = ("frames",)

    def __init__(self, frames):
        self.frames = tuple(StackFrame(*f) for f in frames)


def _option(config, name):
    value = config.getoption(name)
    if value is None:
        value = config.getini(name)
    return value


def pytest_addoption(parser):
    group = parser.getgroup("memray")
    group.addoption("--memray", action="store_true", default=None,
                    help="Track the memory of every test and summarize the biggest")
    group.addoption("--most-allocations", type=int, default=None,
                    help="How many tests the summary shows (default 5, 0 = all)")
    group.addoption("--hide-memray-summary", action="store_true", default=None,
                    help="No memray summary at the end")
    group.addoption("--memray-bin-path", default=None,
                    help="Keep the captures in this directory (default: a temporary one)")
    group.addoption("--memray-bin-prefix", default=None,
                    help="Prefix of the capture file names")
    group.addoption("--stacks", type=int, default=None,
                    help="Frames shown per stack in failure reports (default 1)")
    group.addoption("--native", action="store_true", default=None,
                    help="Record native frames too")
    group.addoption("--trace-python-allocators", action="store_true", default=None,
                    help="Record pymalloc allocations (not supported yet)")
    group.addoption("--fail-on-increase", action="store_true", default=None,
                    help="Fail a limit_memory test that uses more memory than in the last run")
    parser.addini("memray", "Track every test (as --memray)", type="bool", default=False)
    parser.addini("most_allocations", "As --most-allocations", default="5")
    parser.addini("hide_memray_summary", "As --hide-memray-summary", type="bool", default=False)
    parser.addini("stacks", "As --stacks", default="1")
    parser.addini("native", "As --native", type="bool", default=False)
    parser.addini("trace_python_allocators", "As --trace-python-allocators", type="bool",
                  default=False)
    parser.addini("fail_on_increase", "As --fail-on-increase", type="bool", default=False)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "limit_memory(limit, *, current_thread_only=False): fail the test when its "
        "high-water mark reaches `limit` (e.g. '24 MB')")
    config.addinivalue_line(
        "markers", "limit_leaks(limit, *, filter_fn=None, current_thread_only=False): fail the "
        "test when one stack leaks `limit` or more")
    config.pluginmanager.register(MemrayPlugin(config), "memray-manager")


class _Result:
    def __init__(self, path):
        self.path = path
        with FileReader(path) as reader:
            self.metadata = reader.metadata
            self.records = list(reader.get_high_watermark_allocation_records(merge_threads=True))


class MemrayPlugin:
    def __init__(self, config):
        self.config = config
        self.enabled = bool(_option(config, "memray"))
        self.native = bool(_option(config, "native"))
        self.trace_python_allocators = bool(_option(config, "trace_python_allocators"))
        self.stacks = int(_option(config, "stacks"))
        self.results = {}  # nodeid -> _Result
        path = config.getoption("memray_bin_path")
        self.keep = path is not None
        self.dir = path if self.keep else tempfile.mkdtemp(prefix="memray-pytest-")
        os.makedirs(self.dir, exist_ok=True)
        self.prefix = config.getoption("memray_bin_prefix") or ""

    def pytest_unconfigure(self, config):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _marker(item):
        found = [m for m in item.iter_markers() if m.name in _MARKERS]
        if len(found) > 1:
            raise pytest.UsageError("%s: only one memray marker per test" % item.nodeid)
        return found[0] if found else None

    def _capture_path(self, item):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", item.nodeid).strip("-")
        path = os.path.join(self.dir, "%s%s.bin" % (self.prefix, name))
        if os.path.exists(path):
            os.unlink(path)
        return path

    @pytest.hookimpl(hookwrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        marker = self._marker(pyfuncitem)
        if not (self.enabled or marker):
            yield
            return
        path = self._capture_path(pyfuncitem)
        native = self.native
        options = {"native_traces": native, "trace_python_allocators": self.trace_python_allocators}
        test = pyfuncitem.obj
        # The wrappers' own frames are not shown (they are "<memray>" helpers).
        if inspect.iscoroutinefunction(test):
            @functools.wraps(test)
            async def tracked(*args, **kwargs):
                return await await_tracked(Tracker(path, **options), test, args, kwargs)
        else:
            @functools.wraps(test)
            def tracked(*args, **kwargs):
                return call_tracked(Tracker(path, **options), test, args, kwargs)
        pyfuncitem.obj = tracked
        try:
            yield
        finally:
            pyfuncitem.obj = test
        if os.path.exists(path):
            self.results[pyfuncitem.nodeid] = _Result(path)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.when != "call" or not report.passed:
            return
        marker = self._marker(item)
        result = self.results.get(item.nodeid)
        if marker is None or result is None:
            return
        check = _limit_memory if marker.name == "limit_memory" else _limit_leaks
        failure = check(self, item, result, *marker.args, **marker.kwargs)
        if failure is not None:
            message, section = failure
            report.outcome = "failed"
            report.longrepr = message
            report.sections.append(section)

    def pytest_terminal_summary(self, terminalreporter):
        if not self.enabled or _option(self.config, "hide_memray_summary"):
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "MEMRAY REPORT")
        most = int(_option(self.config, "most_allocations"))
        ranked = sorted(self.results.items(), key=lambda kv: kv[1].metadata.peak_memory,
                        reverse=True)
        for nodeid, result in ranked[:most or len(ranked)]:
            write("Allocation results for %s at the high watermark" % nodeid)
            write("")
            write("\t 📦 Total memory allocated: %s" % binary_size(result.metadata.peak_memory))
            write("\t 📏 Total allocations: %d" % result.metadata.total_allocations)
            write("\t 🥇 Biggest allocating functions:")
            shown = 0
            for record in sorted(result.records, key=lambda r: r.size, reverse=True):
                stack = record.stack_trace()
                if not stack:
                    continue
                write("\t\t- %s:%s:%d -> %s" % (stack[0] + (binary_size(record.size),)))
                shown += 1
                if shown == _TOP_FUNCTIONS:
                    break
            write("")
        if self.keep:
            write("Created %d binary dumps at %s with prefix %r" % (len(self.results), self.dir,
                                                                   self.prefix))


def _records(result, item, leaks, current_thread_only):
    with FileReader(result.path) as reader:
        get = (reader.get_leaked_allocation_records if leaks
               else reader.get_high_watermark_allocation_records)
        records = list(get(merge_threads=not current_thread_only))
        if current_thread_only:
            main = reader.metadata.main_thread_id
            records = [r for r in records if r.tid == main]
    return records


def _stack_text(records, hybrid, frames):
    out = []
    for record in records:
        stack = record.hybrid_stack_trace() if hybrid else record.stack_trace()
        if not stack:
            continue
        out.append("    - %s allocated here:" % binary_size(record.size))
        for function, file, line in stack[:frames]:
            out.append("        %s:%s:%d" % (function, file, line))
        if len(stack) > frames:
            out.append("        ...")
    return "\n".join(out)


def _limit_memory(plugin, item, result, limit, *, current_thread_only=False):
    records = _records(result, item, False, current_thread_only)
    total = sum(r.size for r in records)
    config = plugin.config
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if cache is not None:
        key = "memray/" + item.nodeid
        previous = cache.get(key, {}).get("total_allocated_memory")
        cache.set(key, {"total_allocated_memory": total})
        if _option(config, "fail_on_increase") and previous is not None and total > previous:
            return ("Test previously used %s but now uses %s"
                    % (binary_size(previous), binary_size(total)),
                    ("memray-max-memory", "Test uses more memory than previous run"))
    limit_bytes = parse_size(limit)
    if total < limit_bytes:
        return None
    biggest = sorted(records, key=lambda r: r.size, reverse=True)
    if config.getoption("verbose") < 2:
        biggest = biggest[:10]
    text = "List of allocations:\n" + _stack_text(biggest, plugin.native, plugin.stacks)
    return ("Test was limited to %s but allocated %s" % (binary_size(limit_bytes),
                                                         binary_size(total)),
            ("memray-max-memory", text))


def _limit_leaks(plugin, item, result, limit, *, filter_fn=None, current_thread_only=False):
    limit_bytes = parse_size(limit)
    leaked = []
    for record in _records(result, item, True, current_thread_only):
        if record.size < limit_bytes:
            continue
        if filter_fn is not None and not filter_fn(Stack(record.hybrid_stack_trace())):
            continue
        leaked.append(record)
    if not leaked:
        return None
    leaked.sort(key=lambda r: r.size, reverse=True)
    text = "List of leaked allocations:\n" + _stack_text(leaked, True, max(plugin.stacks, 5))
    return ("Test was allowed to leak %s per location but at least one location leaked more"
            % binary_size(limit_bytes), ("memray-leaked-memory", text))
