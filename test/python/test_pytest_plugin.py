"""The pytest plugin of the memray package, through pytest's own `pytester`: `--memray`'s
summary, the limit_memory and limit_leaks markers, a failing test's report, option errors.

Run as a script under one interpreter (meson does, per interpreter of test/pythons.py): it runs
pytest on itself, or skips (77) where pytest is not installed (Debian's python3-pytest is the test
dependency). The plugin is found through the package's entry point (build/python/memray.dist-info).
"""

import sys

try:
    import pytest
except ImportError as e:
    if __name__ == "__main__":
        print("SKIP: pytest is not installed for %s (%s)" % (sys.executable, e))
        sys.exit(77)
    raise

MIB = 1024 * 1024


def test_summary_names_the_biggest_tests(pytester):
    pytester.makepyfile(test_sizes="""
        def make_big():
            return bytearray(3 * %d)

        def test_big():
            keep = make_big()

        def test_small():
            keep = bytearray(100000)
    """ % MIB)
    result = pytester.runpytest_subprocess("--memray", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "MEMRAY REPORT" in out
    big = out.index("Allocation results for test_sizes.py::test_big at the high watermark")
    small = out.index("Allocation results for test_sizes.py::test_small at the high watermark")
    assert big < small  # biggest first
    result.stdout.fnmatch_lines(["*Total memory allocated: 3.0MiB*",
                                 "*- make_big:*test_sizes.py:2 -> 3.0MiB"])


def test_most_allocations_and_hidden_summary(pytester):
    pytester.makepyfile(test_three="""
        def test_a():
            keep = bytearray(1000000)

        def test_b():
            keep = bytearray(2000000)

        def test_c():
            keep = bytearray(3000000)
    """)
    result = pytester.runpytest_subprocess("--memray", "--most-allocations", "1",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "test_three.py::test_c at the high watermark" in out
    assert "test_three.py::test_a at" not in out and "test_three.py::test_b at" not in out
    result = pytester.runpytest_subprocess("--memray", "--hide-memray-summary",
                                           "-p", "no:cacheprovider")
    assert "MEMRAY REPORT" not in result.stdout.str()


def test_limit_memory(pytester):
    pytester.makepyfile(test_limits="""
        import pytest

        def allocate_too_much():
            return bytearray(3 * %d)

        @pytest.mark.limit_memory("1 MB")
        def test_over():
            keep = allocate_too_much()

        @pytest.mark.limit_memory("1 MB")
        def test_under():
            keep = bytearray(100000)
    """ % MIB)
    # The markers work without --memray (and print no summary then).
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "MEMRAY REPORT" not in out
    result.stdout.fnmatch_lines([
        "*Test was limited to 1.0MiB but allocated 3.0MiB*",
        "*List of allocations:*",
        "*- 3.0MiB allocated here:*",
        "*allocate_too_much:*test_limits.py:4*",
        "FAILED test_limits.py::test_over*",
    ])


def test_limit_leaks(pytester):
    pytester.makepyfile(test_leaks="""
        import pytest

        CACHE = []

        def leak_here():
            CACHE.append(bytearray(2 * %d))

        def leaky_but_ok():
            CACHE.append(bytearray(2 * %d))

        @pytest.mark.limit_leaks("1 MB")
        def test_leaks():
            leak_here()

        @pytest.mark.limit_leaks("1 MB")
        def test_no_leak():
            temporary = bytearray(2 * %d)

        @pytest.mark.limit_leaks("4 MB")
        def test_leak_under_limit():
            leak_here()

        @pytest.mark.limit_leaks(
            "1 MB", filter_fn=lambda stack: all(f.function != "leaky_but_ok" for f in stack.frames))
        def test_filtered():
            leaky_but_ok()
    """ % (MIB, MIB, MIB))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*Test was allowed to leak 1.0MiB per location but at least one location leaked more*",
        "*List of leaked allocations:*",
        "*- 2.0MiB allocated here:*",
        "*leak_here:*test_leaks.py:6*",
        "FAILED test_leaks.py::test_leaks*",
    ])


def test_kept_captures(pytester):
    pytester.makepyfile(test_kept="""
        def test_one():
            keep = bytearray(1000000)
    """)
    bins = pytester.path / "bins"
    result = pytester.runpytest_subprocess("--memray", "--memray-bin-path", str(bins),
                                           "--memray-bin-prefix", "run1-", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    files = sorted(p.name for p in bins.iterdir())
    assert len(files) == 1 and files[0].startswith("run1-") and files[0].endswith(".bin"), files
    import memray
    with memray.FileReader(bins / files[0]) as reader:
        sizes = [r.size for r in reader.get_high_watermark_allocation_records()]
    assert 1000001 in sizes


def test_trace_python_allocators(pytester):
    # Small objects come from pymalloc's arenas: only the allocator hooks see each one made.
    pytester.makepyfile(test_small="KEEP = []\n"
                                   "def test_small():\n"
                                   "    KEEP.extend(str(i) * 3 for i in range(5000))\n")
    bins = pytester.path / "bins"
    result = pytester.runpytest_subprocess("--memray", "--trace-python-allocators",
                                           "--memray-bin-path", str(bins), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    files = list(bins.iterdir())
    assert len(files) == 1, files
    import memray
    with memray.FileReader(files[0]) as reader:
        assert reader.metadata.trace_python_allocators
        made = [r for r in reader.get_allocation_records()
                if r.allocator == memray.AllocatorType.PYMALLOC_MALLOC
                and r.stack_trace()[:1] and r.stack_trace()[0][0].endswith("<genexpr>")]
    assert len(made) >= 5000 - 10, len(made)  # str(i) * 3 makes one str (a few are cached)


def test_one_marker_per_test(pytester):
    pytester.makepyfile(test_two_markers="""
        import pytest

        @pytest.mark.limit_memory("1 MB")
        @pytest.mark.limit_leaks("1 MB")
        def test_both():
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "only one memray marker" in result.stdout.str() + result.stderr.str()


if __name__ == "__main__":
    import os

    # The subprocesses run elsewhere: the package's path must not be relative.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    sys.exit(pytest.main([__file__, "-p", "pytester", "-p", "no:cacheprovider", "-v"]))
