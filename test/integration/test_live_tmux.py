"""The live commands end to end in a real terminal (tmux): the ncurses view of src/tui over the
real stream. A program with known allocations (live_hold: 8 blocks of 1 MiB in
live_hold_blocks) must show up with the right function, bytes and count; quitting must leave an
attached process running and attachable. Every wait is on the screen (capture-pane) or on a
process, with a timeout.

    test_live_tmux.py MEMRAY LIVE_HOLD SCENARIO
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import mrtest

HELD = r"live_hold_blocks\b.*8\.389MB.*\b8\b"  # function, 8 x 1 MiB, 8 allocations


class Pane:
    """One command in its own tmux server, 120 x 40."""

    count = 0

    def __init__(self, command, cwd):
        Pane.count += 1
        # A socket path of our own (not -L NAME in /tmp/tmux-UID), removed with its directory.
        self.dir = tempfile.mkdtemp(prefix="memray-live-tmux-")
        self.server = os.path.join(self.dir, "s")
        # The shell stays after the command so that its exit status can be read from the pane.
        self.tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "40", "-c", cwd,
                  "sh", "-c", command + "; echo COMMAND-EXIT=$?; exec sleep 600")

    def tmux(self, *args):
        return subprocess.run(["tmux", "-f", "/dev/null", "-S", self.server, *args], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=30).stdout.decode(errors="replace")

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def wait(self, regex, what, timeout=60):
        rx = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            m = rx.search(screen)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s\n--- screen ---\n%s" % (what, screen))
            time.sleep(0.05)  # the pane has no change notification: poll it

    def close(self):
        subprocess.run(["tmux", "-S", self.server, "kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote(args):
    return " ".join("'%s'" % a.replace("'", "'\\''") for a in args)


def scenario_run_live(memray, target, check, tmp):
    p = Pane(quote([memray, "run", "--live", "--", target, "8", "1048576"]), tmp)
    try:
        p.wait(HELD, "live_hold_blocks with 8.389MB in 8 allocations")
        check.check(True, "run --live shows the held blocks")
        # The program's output went to a file, named when the view closes.
        p.keys("q")
        m = p.wait(r"The program's output is in (\S+)", "the output file's path")
        with open(m.group(1)) as f:
            check.check(f.read().startswith("HELD 8 1048576"), "the program's output in the file")
        p.wait(r"COMMAND-EXIT=0", "memray run --live exits 0")
        shutil.rmtree(os.path.dirname(m.group(1)), ignore_errors=True)
    finally:
        p.close()


def scenario_remote(memray, target, check, tmp):
    port = free_port()
    program = subprocess.Popen([memray, "run", "--live-remote", "-p", str(port), "--", target,
                                "8", "1048576"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    line = program.stdout.readline()
    check.check("live %d' in another shell" % port in line, "the --live-remote message: " + line)
    p = Pane(quote([memray, "live", str(port)]), tmp)
    try:
        p.wait(HELD, "live_hold_blocks with 8.389MB in 8 allocations")
        check.check(True, "memray live shows the held blocks")
        program.stdin.write("quit\n")
        program.stdin.flush()
        check.equal(program.wait(timeout=60), 0, "the program's exit status")
        p.wait(r"process exited", "'process exited' on the screen")
        p.wait(HELD, "the last table kept after the exit")
        p.keys("q")
        p.wait(r"COMMAND-EXIT=0", "memray live exits 0")
    finally:
        p.close()
        if program.poll() is None:
            program.kill()
        program.wait()


def attach_and_quit(memray, pid, check, tmp, what):
    p = Pane(quote([memray, "attach", str(pid)]), tmp)
    try:
        # The held blocks predate the attach; live_churn always holds its last 64 x 4096 bytes.
        p.wait(r"live_churn\b.*262\.144kB", what + ": live_churn's blocks")
        p.keys("q")
        p.wait(r"COMMAND-EXIT=0", what + ": memray attach exits 0 after q")
    finally:
        p.close()


def scenario_attach(memray, target, check, tmp):
    mrtest.require_ptrace()
    t = subprocess.Popen([target, "8", "1048576", "busy"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        check.check(t.stdout.readline().startswith("HELD"), "target started")
        attach_and_quit(memray, t.pid, check, tmp, "first attach")
        check.check(t.poll() is None, "target running after q")
        attach_and_quit(memray, t.pid, check, tmp, "second attach")
        check.check(t.poll() is None, "target running after the second q")
        t.stdin.write("quit\n")
        t.stdin.flush()
        check.equal(t.wait(timeout=60), 0, "target exit status")
    finally:
        if t.poll() is None:
            t.kill()
        t.wait()


def main():
    memray, target, scenario = sys.argv[1:4]
    memray, target = os.path.abspath(memray), os.path.abspath(target)  # the pane has its own cwd
    if not shutil.which("tmux"):
        mrtest.skip("tmux is not installed")
    check = mrtest.Checker("live-tmux-" + scenario)
    tmp = tempfile.mkdtemp(prefix="memray-live-tmux-")
    try:
        globals()["scenario_" + scenario](memray, target, check, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check.finish()


if __name__ == "__main__":
    main()
