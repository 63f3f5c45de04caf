"""`%load_ext memray` and `%%memray_flamegraph` through IPython's own testing shell
(IPython.testing.globalipapp), under one interpreter; skips (77) where IPython is not installed
(Debian's python3-ipython is the test dependency)."""

import glob
import os
import sys
import tempfile
import unittest

try:
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output
except ImportError as e:
    print("SKIP: IPython is not installed for %s (%s)" % (sys.executable, e))
    sys.exit(77)

import memray

SIZE = 3000001  # bytearray(SIZE) asks for SIZE + 1 bytes


class FlamegraphMagic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ip = start_ipython()
        cls.ip.run_line_magic("load_ext", "memray")
        # The test shell formats text/plain only; a notebook asks for HTML too.
        cls.ip.display_formatter.active_types = ["text/plain", "text/html"]

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.old_cwd = os.getcwd()
        os.chdir(self.tmp.name)
        self.addCleanup(os.chdir, self.old_cwd)

    def run_magic(self, line, cell):
        with capture_output() as out:
            self.ip.run_cell_magic("memray_flamegraph", line, cell)
        return out

    def only_page(self):
        pages = glob.glob(os.path.join("memray-results", "*", "flamegraph.html"))
        self.assertEqual(len(pages), 1, pages)
        self.assertEqual(glob.glob(os.path.join("memray-results", "*", "memray.dump")), [])
        with open(pages[0], encoding="utf-8") as f:
            return pages[0], f.read()

    def test_leaks(self):
        cell = ("def make_leaky_buffer():\n"
                "    return bytearray(%d)\n"
                "leaky_buffer = make_leaky_buffer()\n" % SIZE)
        out = self.run_magic("--leaks", cell)
        page, html = self.only_page()
        self.assertIn("Results saved to " + page, out.stdout)
        # The IFrame pointing at the page was displayed.
        shown = [o.data.get("text/html", "") for o in out.outputs]
        self.assertTrue([h for h in shown if "<iframe" in h and page in h], shown)
        self.assertIn("make_leaky_buffer", html)
        # The cell ran in the user's namespace.
        self.assertEqual(len(self.ip.user_ns["leaky_buffer"]), SIZE)

    def test_temporary_and_options(self):
        cell = ("def make_temporary():\n"
                "    b = bytearray(%d)\n"
                "    del b\n"
                "make_temporary()\n" % SIZE)
        self.run_magic("--temporary-allocations --split-threads --inverted "
                       "--max-memory-records 50", cell)
        _, html = self.only_page()
        self.assertIn("make_temporary", html)

    def test_trace_python_allocators(self):
        # Small objects live in pymalloc's arenas: only the allocator hooks see them being made.
        cell = ("def make_small_objects():\n"
                "    return [str(i) * 3 for i in range(20000)]\n"
                "small_objects = make_small_objects()\n")
        self.run_magic("--leaks --trace-python-allocators", cell)
        _, html = self.only_page()
        self.assertIn("make_small_objects", html)
        self.assertRegex(html, r'"python_allocators":\s*true')

    def test_bad_options(self):
        from IPython.core.error import UsageError

        for line in ("--leaks --temporary-allocations", "--temporal --temporary-allocations",
                     "--no-such-option", "--temporary-allocation-threshold 0"):
            with self.assertRaises(UsageError, msg=line):
                with capture_output():
                    self.ip.run_cell_magic("memray_flamegraph", line, "x = 1\n")
        self.assertFalse(os.path.exists("memray-results"))

    def test_extension_entry_point(self):
        self.assertTrue(callable(memray.load_ipython_extension))
        self.assertIn("memray_flamegraph", self.ip.magics_manager.magics["cell"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
