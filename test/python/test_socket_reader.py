"""memray.SocketReader on a live session (docs/live.md), without a terminal: a program with
known allocations runs under `memray run --live-remote`; the reader connects, and the allocations
show up with the right counts and bytes, stacks and metadata. Every wait is on a condition with a
timeout.
"""

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import memray
from memray._paths import memray_executable

BLOCK = 1000000  # bytearray(BLOCK) asks for BLOCK + 1 bytes
BLOCKS = 5

PROGRAM = textwrap.dedent("""\
    import sys

    def hold():
        out = []
        for _ in range(%d):
            out.append(bytearray(%d))  # line 6
        return out

    kept = hold()
    print("HELD", flush=True)
    sys.stdin.readline()
    """ % (BLOCKS, BLOCK))
HOLD_LINE = 6


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(reader, predicate, what, timeout=60):
    """Checks `predicate` each time the reader has news (or every 100 ms at most)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s (%r)" % (what, reader.status))
        reader._refresh(100)  # returns at the next change of the stream


class SocketReaderTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.script = os.path.join(self.dir.name, "hold.py")
        with open(self.script, "w") as f:
            f.write(PROGRAM)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [memray_executable(), "run", "--python", sys.executable, "--live-remote", "-p",
             str(self.port), self.script],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()
        self.assertIn("live %d' in another shell to see live results" % self.port, first)

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stdin.close()
        self.dir.cleanup()

    def held(self, reader, merge_threads=True):
        for r in reader.get_current_snapshot(merge_threads=merge_threads):
            top = r.stack_trace(1)
            if top and top[0][0] == "hold" and top[0][2] == HOLD_LINE:
                return r
        return None

    def test_known_allocations(self):
        with memray.SocketReader(self.port) as reader:
            self.assertTrue(reader._wait_for_header(60), reader.status)
            self.assertTrue(os.path.exists("/proc/%d" % reader.pid))  # the program, memray's child
            self.assertIn(self.script, reader.command_line)
            self.assertFalse(reader.has_native_traces)
            self.assertTrue(reader.is_active)
            record = wait_until(reader, lambda: self.held(reader), "hold()'s allocations")
            # The loop's bytearrays may still be arriving: wait for all of them.
            record = wait_until(reader, lambda: (lambda r: r if r and r.n_allocations == BLOCKS else None)(
                self.held(reader)), "all %d blocks" % BLOCKS)
            self.assertEqual(record.size, BLOCKS * (BLOCK + 1))
            self.assertEqual(record.n_allocations, BLOCKS)
            self.assertEqual(record.tid, 0)  # merged
            self.assertEqual(record.stack_trace()[0], ("hold", self.script, HOLD_LINE))
            self.assertEqual(record.stack_trace()[1][0], "<module>")
            per_thread = wait_until(reader, lambda: self.held(reader, merge_threads=False), "per thread")
            self.assertEqual(per_thread.size, BLOCKS * (BLOCK + 1))
            self.assertNotEqual(per_thread.tid, 0)
            self.assertEqual(record.allocator, memray.AllocatorType.MALLOC)
            self.assertEqual(record.thread_name, "merged thread")
            self.assertEqual(per_thread.thread_name, "MainThread")

            # The program ends: the reader says so and keeps the last state.
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.assertEqual(self.proc.wait(timeout=60), 0)
            wait_until(reader, lambda: not reader.is_active, "the end of the stream")
            self.assertEqual(reader.status, ("exited", "process exited"))

    def test_not_entered(self):
        reader = memray.SocketReader(self.port)
        with self.assertRaises(ValueError):
            list(reader.get_current_snapshot(merge_threads=True))
        with self.assertRaises(ValueError):
            memray.SocketReader(0)
        # Let the program go: connect once so its wait ends, then quit it.
        with memray.SocketReader(self.port) as r:
            self.assertTrue(r._wait_for_header(60), r.status)
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.assertEqual(self.proc.wait(timeout=60), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
