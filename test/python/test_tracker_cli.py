"""A `memray.Tracker` capture through the command-line reports: like the Python API, they hide the
frames above the Tracker's `with` (the with-frame's callers) and keep the with-frame and its
callees (docs/python-api.md, "Frames above the `with`"). meson runs it under one interpreter with
PYTHONPATH=build/python.

The target script runs in a child interpreter so that its stack is known: <module> calls
caller_above_the_with, which calls frame_with_the_with, which holds the `with` and calls
callee_in_the_with, which keeps a bytearray of a size nothing else allocates.
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

import memray
from memray._paths import memray_executable

KEPT = 3000001  # bytearray(n) asks for n + 1 bytes

TARGET = """\
import sys
import memray
kept = []
def callee_in_the_with():
    kept.append(bytearray(%d))
def frame_with_the_with(path):
    with memray.Tracker(path):
        callee_in_the_with()
def caller_above_the_with(path):
    frame_with_the_with(path)
caller_above_the_with(sys.argv[1])
""" % KEPT

KEPT_FRAMES = ["callee_in_the_with", "frame_with_the_with"]
HIDDEN_FRAMES = ["caller_above_the_with"]


class TrackerCaptureInReports(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.memray = memray_executable()
        if not os.access(cls.memray, os.X_OK):
            cls.tmp.cleanup()
            raise unittest.SkipTest("no memray command at %s" % cls.memray)
        cls.script = os.path.join(cls.tmp.name, "target.py")
        with open(cls.script, "w") as f:
            f.write(TARGET)
        cls.capture = os.path.join(cls.tmp.name, "tracker.bin")
        p = cls.run_cmd([sys.executable, cls.script, cls.capture])
        if p.returncode != 0:
            cls.tmp.cleanup()
            raise AssertionError("target failed: " + p.stderr.decode(errors="replace"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def run_cmd(cls, args):
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(memray.__file__)))
        return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=cls.tmp.name, env=env, timeout=120)

    def report(self, args):
        p = self.run_cmd([self.memray] + args)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return p.stdout.decode()

    def script_frames(self, stack):
        """Functions of the target script in a csv stack_trace, innermost first."""
        frames = [f.split(";") for f in stack.split("|")] if stack else []
        return [f[0] for f in frames if len(f) == 3 and f[1] == self.script]

    def test_the_api_agrees(self):
        # The reference: the Python API's stack of the kept block.
        with memray.FileReader(self.capture) as r:
            found = [x for x in r.get_high_watermark_allocation_records() if x.size == KEPT + 1]
        self.assertEqual(len(found), 1)
        self.assertEqual([f[0] for f in found[0].stack_trace()], KEPT_FRAMES)

    def test_transform_csv(self):
        out = os.path.join(self.tmp.name, "out.csv")
        self.report(["transform", "csv", "-f", "-o", out, self.capture])
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if int(r["size"]) == KEPT + 1]
        self.assertEqual(len(kept), 1, rows)
        self.assertEqual(self.script_frames(kept[0]["stack_trace"]), KEPT_FRAMES)
        # No stack of any row reaches above the `with`.
        for r in rows:
            for name in HIDDEN_FRAMES + ["<module>"]:
                self.assertNotIn(name, self.script_frames(r["stack_trace"]), r)

    def test_tree(self):
        text = self.report(["tree", self.capture])
        for name in KEPT_FRAMES:
            self.assertIn(name, text)
        for name in HIDDEN_FRAMES:
            self.assertNotIn(name, text)
        self.assertNotIn("target.py:11", text)  # the <module> frame's call

    def test_flamegraph(self):
        out = os.path.join(self.tmp.name, "flame.html")
        self.report(["flamegraph", "-f", "-o", out, self.capture])
        with open(out, encoding="utf-8") as f:
            html = f.read()
        # The page's data: one JSON script element, frames as [function, file, line, flags].
        start = html.index('id="memray-data">') + len('id="memray-data">')
        data = json.loads(html[start:html.index("</script>", start)])
        names = [f[0] for f in data["frames"] if f[1] == self.script]
        for name in KEPT_FRAMES:
            self.assertIn(name, names)
        for name in HIDDEN_FRAMES + ["<module>"]:
            self.assertNotIn(name, names)

    def test_summary(self):
        text = self.report(["summary", self.capture])
        for name in KEPT_FRAMES:
            self.assertIn(name, text)
        for name in HIDDEN_FRAMES + ["<module>"]:
            self.assertNotIn(name, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
