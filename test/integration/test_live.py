"""Live mode without a terminal (docs/live.md): `memray run --live-remote` + `memray live PORT`
and `memray attach PID` without -o, whose view prints its table as text when stdout is a pipe.
Every check waits on what the processes print, with a timeout; nothing sleeps a fixed time.

    test_live.py MEMRAY LIVE_HOLD SCENARIO
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import mrtest

COUNT, SIZE = 8, 1048576  # what live_hold holds in live_hold_blocks


class Proc:
    """A process whose stdout (and stderr, merged) is collected line by line as it arrives."""

    def __init__(self, cmd, stdin=subprocess.PIPE):
        self.cmd = cmd
        self.p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = []
        self.cond = threading.Condition()
        self.done = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, predicate, what, timeout=60):
        """Waits until predicate(lines) is true; fails with the output when it is not in time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = predicate(self.lines)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0 or (self.done and not predicate(self.lines)):
                    raise AssertionError("%s: not seen in %s's output (%s):\n%s" % (
                        what, " ".join(self.cmd[:3]), "ended" if self.done else "timeout",
                        "\n".join(self.lines[-40:])))
                self.cond.wait(left)

    def wait_line(self, pattern, what, timeout=60):
        rx = re.compile(pattern)

        def find(lines):
            for line in lines:
                m = rx.search(line)
                if m:
                    return m
            return None
        return self.wait_for(find, what, timeout)

    def exit_code(self, timeout=60):
        return self.p.wait(timeout=timeout)

    def text(self):
        with self.cond:
            return "\n".join(self.lines)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hold_row(lines, count=COUNT, size=SIZE):
    """The text view's row of live_hold_blocks with the expected bytes and count."""
    for line in lines:
        f = line.split()
        if len(f) >= 5 and f[0] == "live_hold_blocks" and f[-3] == str(count * size) \
                and f[-1] == str(count):
            return line
    return None


def start_remote(memray, target, port, *target_args):
    t = Proc([memray, "run", "--live-remote", "-p", str(port), "--", target, str(COUNT), str(SIZE),
              *target_args])
    t.wait_line(r"Run '.*live %d' in another shell to see live results" % port,
                "the --live-remote message")
    return t


def scenario_remote(memray, target, check):
    port = free_port()
    t = start_remote(memray, target, port)
    viewer = Proc([memray, "live", str(port)])
    row = viewer.wait_for(hold_row, "live_hold_blocks holding %d x %d bytes" % (COUNT, SIZE))
    check.check(row is not None, "row shown")
    t.wait_line(r"^HELD %d %d" % (COUNT, SIZE), "the target's own output")
    # The target ends: the viewer says so and ends too.
    t.p.stdin.write("quit\n")
    t.p.stdin.flush()
    check.equal(t.exit_code(), 0, "target exit status")
    viewer.wait_line(r"process exited", "'process exited' in the viewer")
    check.equal(viewer.exit_code(), 0, "viewer exit status")


def scenario_viewer_killed(memray, target, check):
    port = free_port()
    t = start_remote(memray, target, port)
    viewer = Proc([memray, "live", str(port)])
    viewer.wait_for(hold_row, "the row before the kill")
    viewer.p.kill()
    viewer.exit_code()
    # The target runs on unharmed (no SIGPIPE) and ends normally when told.
    check.check(t.p.poll() is None, "target still running after the viewer's SIGKILL")
    t.p.stdin.write("quit\n")
    t.p.stdin.flush()
    check.equal(t.exit_code(), 0, "target exit status after the viewer was killed")


def scenario_reconnect(memray, target, check):
    port = free_port()
    t = start_remote(memray, target, port, "busy")
    first = Proc([memray, "live", str(port)])
    first.wait_for(hold_row, "the first viewer's row")
    first.p.kill()
    first.exit_code()
    # A new viewer gets a new session: what is allocated from now on (live_churn's ring), not
    # the blocks held since before it connected.
    second = Proc([memray, "live", str(port)])
    second.wait_line(r"^live_churn +\S+ +\d+ +\d+ +\d+$", "live_churn's row in the second viewer")
    check.check(hold_row(second.lines) is None, "the second viewer does not see the old blocks")
    check.check(t.p.poll() is None, "target running with its second viewer")
    check.check(not any("error" in line for line in t.lines),
                "a viewer that leaves is no error on the target's output %r"
                % [line for line in t.lines if "error" in line])
    t.p.stdin.write("quit\n")
    t.p.stdin.flush()
    check.equal(t.exit_code(), 0, "target exit status")
    second.wait_line(r"process exited", "'process exited' in the second viewer")
    check.equal(second.exit_code(), 0, "second viewer exit status")


def scenario_slow_viewer(memray, target, check):
    """A viewer that stops reading must not hold the program back: blocks are dropped and
    counted, and the count reaches the viewer when it reads again."""
    port = free_port()
    t = Proc([memray, "run", "--no-compress", "--live-remote", "-p", str(port), "--", target,
              "1", "1", "busy"])
    t.wait_line(r"another shell to see live results", "the --live-remote message")
    deadline = time.monotonic() + 60
    while True:  # the message comes before the program listens: retry, as memray live does
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # nothing to block on until the port opens
    s.sendall(b"memray-live 1\n")
    hello = b""
    while len(hello) < 14:
        hello += s.recv(14 - len(hello))
    check.equal(hello, b"memray-live 1\n", "the target's hello")
    # Not reading now. Uncompressed, the churn streams several MB/s: the 32 MiB queue and the
    # socket buffers fill within seconds, after which a blocking sink would stop the program.
    t.wait_line(r"^TICK 120$", "the program's progress while the viewer does not read", timeout=120)
    check.check(True, "the program kept running with a viewer that does not read")
    # Reading again: somewhere after the queued blocks comes the drop count.
    dropped, buf = 0, b""
    deadline = time.monotonic() + 120
    while dropped == 0 and time.monotonic() < deadline:
        data = s.recv(1 << 20)
        if not data:
            break
        buf += data
        while len(buf) >= 5:
            kind, length = buf[0], int.from_bytes(buf[1:5], "little")
            if len(buf) < 5 + length:
                break
            if kind == ord("D"):
                dropped = int.from_bytes(buf[5:13], "little")
            elif kind != ord("C"):
                check.check(False, "unknown chunk type %d" % kind)
                deadline = 0
            buf = buf[5 + length:]
    check.check(dropped > 0, "a drop count arrived (%d blocks)" % dropped)
    s.close()
    t.p.stdin.write("quit\n")
    t.p.stdin.flush()
    check.equal(t.exit_code(), 0, "program exit status")


def scenario_target_killed(memray, target, check):
    port = free_port()
    t = start_remote(memray, target, port)
    viewer = Proc([memray, "live", str(port)])
    viewer.wait_for(hold_row, "the row before the kill")
    # The program itself (memray run's child, named in the view's header), not memray run.
    pid = int(viewer.wait_line(r"^pid (\d+) ", "the program's pid in the view").group(1))
    os.kill(pid, signal.SIGKILL)
    check.equal(t.exit_code(), 128 + signal.SIGKILL, "memray run's status after the kill")
    viewer.wait_line(r"process exited", "'process exited' after the target's SIGKILL")
    check.equal(viewer.exit_code(), 0, "viewer exit status")


def scenario_garbage(memray, target, check):
    # Something that is not a tracked process answers on the port.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        c, _ = server.accept()
        c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        c.recv(100)
        c.close()
    threading.Thread(target=serve, daemon=True).start()
    viewer = Proc([memray, "live", str(port)])
    code = viewer.exit_code(timeout=30)
    out = viewer.text()
    check.equal(code, 1, "exit status on garbage")
    check.check(len(out.splitlines()) == 1 and out.startswith("memray: error: 127.0.0.1:%d is not a "
             "memray live stream" % port), "one-line error on garbage, got:\n" + out)
    server.close()


def scenario_port_in_use(memray, target, check):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    p = subprocess.run([memray, "run", "--live-remote", "-p", str(port), "--", target, "1", "1"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    check.equal(p.returncode, 1, "exit status with the port in use")
    check.check("cannot listen on 127.0.0.1:%d" % port in p.stderr and "in use" in p.stderr,
             "port-in-use message, got: " + p.stderr)
    busy.close()


def attach_live_once(memray, pid, check, what):
    viewer = Proc([memray, "attach", str(pid)], stdin=subprocess.DEVNULL)
    # The held blocks predate the attach; live_churn always holds its last 64 blocks.
    viewer.wait_line(r"^live_churn +\S+ +\d+ +\d+ +\d+$", what + ": live_churn's row")
    viewer.p.send_signal(signal.SIGINT)  # the text view's "q"
    check.equal(viewer.exit_code(), 0, what + ": exit status after SIGINT")
    return viewer


def scenario_attach(memray, target, check):
    mrtest.require_ptrace()
    t = Proc([target, str(COUNT), str(SIZE), "busy"])
    t.wait_line(r"^HELD", "the target started")
    # The blocks were allocated before the attach: only the churn is seen, as in memray.
    attach_live_once(memray, t.p.pid, check, "attach 1")
    check.check(t.p.poll() is None, "target runs on after quitting the view")
    # Tracking stopped: a file attach works at once and finds no session left behind.
    attach_live_once(memray, t.p.pid, check, "attach 2")
    check.check(t.p.poll() is None, "target runs on after the second view")
    t.p.stdin.write("quit\n")
    t.p.stdin.flush()
    check.equal(t.exit_code(), 0, "target exit status")


def scenario_attach_cycles(memray, target, check):
    mrtest.require_ptrace()
    t = Proc([target, str(COUNT), str(SIZE), "busy"])
    t.wait_line(r"^HELD", "the target started")
    for i in range(20):
        attach_live_once(memray, t.p.pid, check, "cycle %d" % (i + 1))
        if t.p.poll() is not None:
            check.check(False, "target died in cycle %d" % (i + 1))
            break
    t.p.stdin.write("quit\n")
    t.p.stdin.flush()
    check.equal(t.exit_code(), 0, "target exit status after 20 cycles")


def main():
    memray, target, scenario = sys.argv[1:4]
    check = mrtest.Checker("live-" + scenario)
    globals()["scenario_" + scenario](memray, target, check)
    check.finish()


if __name__ == "__main__":
    main()
