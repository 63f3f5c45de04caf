#!/usr/bin/env python3
"""The live view through a real terminal: tmux runs live-view-double (tui::run_live_view over a
scripted live::Source), the test types keys with send-keys and reads the screen with
capture-pane, waiting on what the screen shows (with a timeout), never for a fixed time.

usage: test_live_view.py LIVE_VIEW_DOUBLE [TEST_NAME...]
Exit: 0 pass, 1 fail, 77 skip (tmux missing).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
DOUBLE = None

# Three locations whose order differs for each sort key:
#   total: main > build_cache > parse; own: build_cache > parse > main;
#   allocations: parse > main > build_cache.
BASE_SCRIPT = [
    "cmd\tpython3 app.py --serve",
    "thread\t1\t1000\tMainThread",
    "thread\t2\t1001\tworker",
    "row\t1\tmain\tapp.py\t10\t3000000\t0\t30",
    "row\t1\tbuild_cache\tapp.py\t20\t2000000\t2000000\t5",
    "row\t1\tparse\tlib/parser.py\t5\t1000000\t1000000\t50",
    "row\t2\tworker_loop\tworker.py\t7\t500000\t500000\t8",
    "heap\t3500000\t9000000",
    "heap\t2000000\t9000000",
    "heap\t3500000\t9100000",
    "status\trunning",
]


class Failure(Exception):
    pass


def check(cond, what, screen=None):
    if not cond:
        raise Failure(what + ("\n--- screen ---\n" + screen if screen is not None else ""))


class View:
    """One live-view-double in its own tmux server."""

    count = 0

    def __init__(self, script, width=120, height=30, term=None, locale="C.UTF-8"):
        View.count += 1
        self.dir = tempfile.mkdtemp(prefix="live-view-test-")
        # The server's socket inside the test's directory, so nothing is left behind in /tmp/tmux-*.
        self.socket = os.path.join(self.dir, "tmux.sock")
        self.log_path = os.path.join(self.dir, "log")
        ctl = os.path.join(self.dir, "ctl")
        os.mkfifo(ctl)
        with open(os.path.join(self.dir, "script"), "w") as f:
            f.write("\n".join(script) + "\n")
        open(self.log_path, "w").close()
        # trap: the shell outlives a Ctrl-C meant for the view, as an interactive shell does.
        # A UTF-8 locale unless a test asks for another: the heap graph's block characters.
        env = "LC_ALL=%s %s" % (locale, "TERM=%s " % term if term else "")
        command = ("trap : INT; %s%s script ctl log %s; echo VIEW-EXIT=$?; stty -a; exec sleep 600"
                   % (env, DOUBLE, self.dir))
        self.tmux("new-session", "-d", "-s", "v", "-x", str(width), "-y", str(height),
                  "-c", self.dir, "sh", "-c", command)
        # O_RDWR: opening never waits for the reader, and the view never sees an EOF.
        self.ctl = os.open(ctl, os.O_RDWR)
        self.pid = int(self.wait_log(r"^pid (\d+)$").group(1))

    def tmux(self, *args):
        return subprocess.run(["tmux", "-f", "/dev/null", "-S", self.socket] + list(args),
                              check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=30).stdout.decode(errors="replace")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "v", *keys)

    def text(self, text):
        self.tmux("send-keys", "-t", "v", "-l", text)

    def control(self, *lines):
        os.write(self.ctl, ("\n".join(lines) + "\n").encode())

    def screen(self, escapes=False):
        """The pane's text; with escapes, with the SGR sequences of its colours and attributes."""
        return self.tmux("capture-pane", "-p", "-t", "v", *(["-e"] if escapes else []))

    def wait(self, cond, what, timeout=10):
        """Waits until cond(screen) is true (a regex string: found on the screen); returns the
        screen. Fails with the last screen after the timeout."""
        return self._wait(cond, what, timeout)[1]

    def wait_match(self, regex, what, timeout=10):
        """Waits until regex is found on the screen; returns the match."""
        return self._wait(regex, what, timeout)[0]

    def _wait(self, cond, what, timeout):
        if isinstance(cond, str):
            cond = re.compile(cond, re.M).search
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            got = cond(screen)
            if got:
                return got, screen
            if time.monotonic() > deadline:
                raise Failure("timed out waiting for %s\n--- screen ---\n%s" % (what, screen))
            time.sleep(0.05)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_log(self, regex, timeout=10):
        pattern = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise Failure("timed out waiting for %r in the log:\n%s" % (regex, self.log()))
            time.sleep(0.05)

    def duration(self):
        m = self.wait_match(r"Duration: (\d+\.\d) s", "the duration")
        return float(m.group(1))

    def wait_duration_past(self, seconds):
        """Waits until the header's duration (the source's clock) is past `seconds`."""
        def later(screen):
            m = re.search(r"Duration: (\d+\.\d) s", screen)
            return m is not None and float(m.group(1)) > seconds
        self.wait(later, "the duration to pass %.1f s" % seconds)

    def wait_exit(self):
        m = self.wait_match(r"VIEW-EXIT=(\d+)", "the view to exit")
        code = int(m.group(1))
        screen = self.wait(r"(?<!-)icanon", "stty -a after the view")
        return code, screen

    def close(self):
        try:
            self.tmux("kill-server")
        except subprocess.SubprocessError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        os.close(self.ctl)
        shutil.rmtree(self.dir, ignore_errors=True)


def table(screen):
    """Function names of the table rows, top to bottom."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Location"):
            names = []
            for row in lines[i + 1:]:
                if not row.strip() or row.startswith("  (") or row.startswith(" q ") or \
                        row.startswith("Filter") or \
                        row.startswith("Flame") or row.startswith("Could not"):
                    break
                names.append(row.split()[0])
            return names
    return []


def wait_table(view, expected, what):
    return view.wait(lambda s: table(s) == expected and s, "%s: table %s" % (what, expected))


def assert_cooked(screen):
    after = screen[screen.index("VIEW-EXIT="):]
    check(re.search(r"(?<!-)\bicanon\b", after) and re.search(r"(?<![-\w])echo\b", after),
          "the terminal is back in cooked mode (icanon echo)", screen)


# ---- the tests -------------------------------------------------------------------------------

def test_header_and_table():
    v = View(BASE_SCRIPT)
    try:
        v.wait(r"^PID: %d\s+CMD: python3 app.py --serve" % v.pid, "PID and CMD")
        # The footer is the last line the terminal receives: then the whole screen is there.
        s = v.wait(r"^ q Quit", "the footer")
        check(re.search(r"^Thread: 1 of 2 \(MainThread, tid 1000\)", s, re.M), "thread line", s)
        check(re.search(r"^Samples: 3\s+Duration: \d+\.\d s", s, re.M), "samples line", s)
        check(re.search(r"^Heap: 3\.500MB \(100% of 3\.500MB max\)\s+RSS: 9\.100MB", s, re.M),
              "heap and RSS", s)
        check(re.search(r"^Location\s+Total Bytes\s+% Total\s+Own Bytes\s+% Own\s+Allocations\s+"
                        r"File/Module", s, re.M), "the column titles", s)
        check(re.search(r"^main\s+3\.000MB\s+85\.71%\s+0\.000B\s+0\.00%\s+30\s+app\.py:10\s*$", s,
                        re.M), "main's row", s)
        check(re.search(r"^parse\s+1\.000MB\s+28\.57%\s+1\.000MB\s+28\.57%\s+50\s+lib/parser\.py:5",
                        s, re.M), "parse's row", s)
        check(table(s) == ["main", "build_cache", "parse"], "sorted by total", s)
        check("3 locations, sorted by total" in s, "the table's info line", s)
        check(re.search(r"^ q Quit\s+<> Thread\s+t Sort Total\s+o Sort Own\s+a Sort Allocations", s,
                        re.M), "the footer shows the keys", s)
        check(re.search(r"[\u2581-\u2588]", s), "the heap graph", s)
        # A path too long for the File/Module column keeps its end (file name and line).
        v.control("row\t1\tdeep\t/usr/lib/python3.11/site-packages/some/deeply/nested/package/"
                  "module_with_a_long_name.py\t4242\t100\t100\t1")
        s = v.wait(r"^deep\s.*\u2026[a-z_]*_long_name\.py:4242\s*$", "the clipped path")
    finally:
        v.close()


def line_of(screen, start):
    """The line (escapes kept) whose text starts with the regex start."""
    sgr = re.compile(r"\x1b\[[0-9;]*m")
    return next((line for line in screen.splitlines() if re.match(start, sgr.sub("", line))), "")


def test_colour_by_share():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        s = v.screen(escapes=True)
        # tmux reports colours as SGR 31 (red), 33 (yellow), 32 (green).
        check("\x1b[31m" in line_of(s, r"main\b"), "main (86% of the heap) is red", s)
        check("\x1b[33m" in line_of(s, r"build_cache\b"), "build_cache (57%) is yellow", s)
        check("\x1b[32m" in line_of(s, r"parse\b"), "parse (29%) is green", s)
    finally:
        v.close()


def test_no_colours():
    v = View(BASE_SCRIPT, term="vt100")
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start on a terminal without colours")
        s = v.screen(escapes=True)
        check(not re.search(r"\x1b\[[0-9;]*3[1-7]m", s), "no colour codes", s)
        # The fallback: big shares in bold (SGR 1).
        check("\x1b[1m" in line_of(s, r"main\b"), "main's big share is bold", s)
    finally:
        v.close()


def test_ascii_graph():
    v = View(BASE_SCRIPT, locale="C")
    try:
        s = wait_table(v, ["main", "build_cache", "parse"], "start in the C locale")
        check(re.search(r"#\s*$", s.splitlines()[0]) and not re.search(r"[\u2581-\u2588]", s),
              "the heap graph in ASCII", s)
    finally:
        v.close()


def test_sort_keys():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        v.keys("o")
        s = wait_table(v, ["build_cache", "parse", "main"], "o")
        check("sorted by own" in s, "info says own", s)
        v.keys("a")
        s = wait_table(v, ["parse", "main", "build_cache"], "a")
        check("sorted by allocations" in s, "info says allocations", s)
        v.keys("t")
        wait_table(v, ["main", "build_cache", "parse"], "t")
    finally:
        v.close()


def test_threads_and_merge():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        v.keys(">")
        s = wait_table(v, ["worker_loop"], ">")
        check(re.search(r"^Thread: 2 of 2 \(worker, tid 1001\)", s, re.M), "thread 2", s)
        v.keys("<")
        wait_table(v, ["main", "build_cache", "parse"], "<")
        v.keys("Right")
        s = wait_table(v, ["worker_loop"], "right arrow")
        v.keys("Left")
        s = wait_table(v, ["main", "build_cache", "parse"], "left arrow")
        v.keys("<")  # wraps from the first thread to the last
        s = wait_table(v, ["worker_loop"], "< wraps")
        check("Thread: 2 of 2" in s, "wrapped to thread 2", s)
        v.keys("m")
        s = wait_table(v, ["main", "build_cache", "parse", "worker_loop"], "m")
        check(re.search(r"^Thread: \* \(all threads merged\)", s, re.M), "merged", s)
        check("m Split threads" in s, "the footer offers to split", s)
        v.wait_log(r"^rows 0 0$")
        v.keys("m")
        s = wait_table(v, ["worker_loop"], "m again")
        check("Thread: 2 of 2" in s, "split again: back on the thread shown before", s)
    finally:
        v.close()


def test_updates_in_place_and_pause():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        # Rows update without a key: a new location and a new sample.
        v.control("row\t1\tload_model\tmodel.py\t3\t9000000\t9000000\t2", "heap\t12000000\t20000000")
        s = wait_table(v, ["load_model", "main", "build_cache", "parse"], "an update")
        v.wait(r"^Samples: 4\s", "samples 4")
        v.keys("Space")
        v.wait(r"PAUSED", "the paused marker")
        v.control("row\t1\tpaused_hotspot\thot.py\t1\t50000000\t50000000\t1", "heap\t60000000\t70000000")
        v.wait(r"^Samples: 5\s", "the header keeps updating while paused")
        # Two seconds of the source's clock (twice memray's update period) later, still frozen.
        v.wait_duration_past(v.duration() + 2.0)
        s = v.screen()
        check(table(s) == ["load_model", "main", "build_cache", "parse"],
              "the table does not change while paused", s)
        v.keys("Space")
        s = wait_table(v, ["paused_hotspot", "load_model", "main", "build_cache", "parse"],
                       "resumed")
        check("PAUSED" not in s, "the marker is gone", s)
    finally:
        v.close()


def test_scroll():
    count = 200
    script = BASE_SCRIPT[:3] + ["synthetic\t1\t%d" % count, "heap\t100000000\t100000000"]
    # The double's synthetic totals; the view breaks ties by function name.
    rows = sorted(((i * 7919) % 1000003 + 1, "synthetic_function_%d" % i) for i in range(count))
    order = [name for _, name in sorted(rows, key=lambda r: (-r[0], r[1]))]
    v = View(script, height=30)
    try:
        # The footer is the last line the terminal receives: the table above it is complete.
        s = v.wait(lambda s: table(s)[:1] == order[:1] and re.search(r"^ q Quit", s, re.M) and s,
                   "the first page")
        page = len(table(s))
        check(page > 10, "a page of rows", s)
        v.keys("Down")
        v.wait(lambda s: table(s)[:1] == [order[1]] and s, "down scrolls one row")
        v.keys("Down", "Down")
        v.wait(lambda s: table(s)[:1] == [order[3]] and s, "down twice more")
        v.keys("Up")
        v.wait(lambda s: table(s)[:1] == [order[2]] and s, "up scrolls back")
        v.keys("PageDown")
        v.wait(lambda s: table(s)[:1] == [order[2 + page]] and s, "PgDn scrolls a page")
        v.keys("PageUp")
        v.wait(lambda s: table(s)[:1] == [order[2]] and s, "PgUp scrolls back")
        v.keys("End")
        v.wait(lambda s: table(s)[-1:] == [order[-1]] and s, "End shows the last row")
        v.keys("Home")
        v.wait(lambda s: table(s)[:1] == [order[0]] and s, "Home shows the first row")
    finally:
        v.close()


def test_filter():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        v.keys("/")
        v.wait(r"^Filter \(function or file", "the filter prompt")
        v.text("BUILD")  # case-insensitive, on the function
        s = wait_table(v, ["build_cache"], "filter on a function")
        v.keys("Enter")
        s = v.wait(lambda s: "Filter (" not in s and s, "the prompt closes on Enter")
        check('filter "BUILD": 1 shown' in s, "the info line shows the filter", s)
        check(table(s) == ["build_cache"], "the filter stays", s)
        # q while editing is text, not quit; Esc cancels the edit, not the view.
        v.keys("/")
        v.keys("BSpace", "BSpace", "BSpace", "BSpace", "BSpace")
        v.text("lib/")  # on the file
        wait_table(v, ["parse"], "filter on a file")
        v.text("q")
        wait_table(v, [], "q is typed into the filter")
        v.keys("Escape")
        s = wait_table(v, ["build_cache"], "Esc restores the filter before the edit")
        v.keys("/")
        v.keys(*["BSpace"] * 5)
        v.keys("Enter")
        wait_table(v, ["main", "build_cache", "parse"], "an empty filter shows everything")
        check(v.log().count("close") == 0, "still running", v.screen())
    finally:
        v.close()


def test_narrow_layout_and_resize():
    v = View(BASE_SCRIPT, width=120, height=30)
    try:
        s = v.wait(r"File/Module", "the wide layout")
        check(re.search(r"[\u2581-\u2588]\s*$", s.splitlines()[0]), "the graph beside the header", s)
        v.tmux("resize-window", "-t", "v", "-x", "70", "-y", "24")
        s = v.wait(lambda s: "File/Module" not in s and re.search(r"^Location\s+Total\s+% Total", s, re.M)
                   and s, "the narrow layout")
        check(max(len(line) for line in s.splitlines()) <= 70, "nothing beyond 70 columns", s)
        check(re.search(r"^main  app\.py:10\s+3\.000MB\s+85\.71%", s, re.M),
              "narrow rows carry the file after the function", s)
        check(re.search(r"^ q quit\s+<> thread\s+t/o/a sort\s+m merge\s+spc pause\s+/ filter\s+f flame", s, re.M),
              "the short footer", s)
        v.tmux("resize-window", "-t", "v", "-x", "120", "-y", "30")
        s = v.wait(r"File/Module", "wide again after the resize")
        check(table(s) == ["main", "build_cache", "parse"], "the table survives resizes", s)
        v.tmux("resize-window", "-t", "v", "-x", "30", "-y", "6")
        v.wait(lambda s: len(s.splitlines()) <= 6 and "PID" in s and s, "a tiny terminal")
        v.tmux("resize-window", "-t", "v", "-x", "120", "-y", "30")
        v.wait(r"File/Module", "back from tiny")
    finally:
        v.close()


def test_flamegraph_key():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        v.keys("f")
        path = os.path.join(v.dir, "memray-live-flamegraph-%d-1.html" % v.pid)
        s = v.wait(r"written to " + re.escape(path), "where the flame graph went")
        check(os.path.exists(path), "the flame graph file exists", s)
        v.wait_log(r"^flamegraph " + re.escape(path) + "$")
        # The sample shows when the double has read the line (keys and control are not ordered).
        v.control("flamegraph_error\tNo space left on device", "heap\t3600000\t9100000")
        v.wait(r"^Samples: 4\s", "the double has read the control line")
        v.keys("f")
        v.wait(r"Could not write the flame graph: No space left on device", "the error")
    finally:
        v.close()


def test_process_exited_keeps_table():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        v.control("row\t1\tlast_words\tatexit.py\t1\t8000000\t8000000\t1", "status\texited\tprocess exited")
        s = v.wait(r"^process exited: the table shows the last state; press q to quit", "exited")
        # The final data shows at once, not a second later.
        s = wait_table(v, ["last_words", "main", "build_cache", "parse"], "the final table")
        v.wait_duration_past(v.duration() + 1.5)
        s = v.screen()
        check("process exited" in s and table(s)[:1] == ["last_words"], "kept on screen", s)
        check("close" not in v.log(), "the view waits for q", s)
        v.keys("q")
        code, s = v.wait_exit()
        check(code == 0, "exit status 0 after q", s)
        v.wait_log(r"^close$")
    finally:
        v.close()


def test_status_lines():
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        v.control("dropped\t12", "output\t/tmp/memray-run-output-1234.txt")
        v.wait(r"dropped 12 blocks", "dropped blocks")
        v.wait(r"^Program output: /tmp/memray-run-output-1234\.txt", "the program's output file")
        v.control("status\tdisconnected\tconnection reset by peer")
        s = v.wait(r"^disconnected: connection reset by peer", "disconnected")
        check(table(s) == ["main", "build_cache", "parse"], "the table stays", s)
        v.control("status\tfailed\tnot a memray stream (bad magic)")
        v.wait(r"^error: not a memray stream \(bad magic\)", "the stream error")
        v.keys("q")
        code, s = v.wait_exit()
        check(code == 1, "a failed stream ends the view with status 1", s)
    finally:
        v.close()


def test_waiting():
    v = View(["status\twaiting"])
    try:
        v.wait(r"Waiting for data from the tracked process", "the waiting line")
        v.wait(r"no live allocations", "an empty table")
        v.control("thread\t1\t1\tMainThread", "row\t1\tfirst\tf.py\t1\t100\t100\t1", "status\trunning")
        s = v.wait(lambda s: table(s) == ["first"] and s, "the first row")
        check("Waiting" not in s, "the waiting line goes", s)
    finally:
        v.close()


def test_native_internal_frames():
    script = BASE_SCRIPT + [
        "native\t1",
        "row\t1\t_PyEval_EvalFrameDefault\tlibpython3.11.so\t0\t2500000\t2500000\t3\tinternal",
    ]
    v = View(script, width=150)  # room for the long footer with the u key
    try:
        s = wait_table(v, ["main", "build_cache", "parse"], "internals hidden by default")
        check("CPython internals hidden" in s and "u Show internals" in s, "says so", s)
        v.wait_log(r"^rows 1 1$")
        v.keys("u")
        s = wait_table(v, ["main", "_PyEval_EvalFrameDefault", "build_cache", "parse"], "u")
        check("CPython internals shown" in s and "u Hide internals" in s, "says so", s)
        v.wait_log(r"^rows 1 0$")
    finally:
        v.close()


def quit_with(*keys, signal_to_send=None, expect_code=0, expect_close=True):
    v = View(BASE_SCRIPT)
    try:
        wait_table(v, ["main", "build_cache", "parse"], "start")
        if signal_to_send is not None:
            os.kill(v.pid, signal_to_send)
        else:
            v.keys(*keys)
        code, s = v.wait_exit()
        check(code == expect_code, "exit status %d, got %d" % (expect_code, code), s)
        assert_cooked(s)
        if expect_close:
            v.wait_log(r"^close$")
            check(v.log().count("close") == 1, "close() once", v.log())
    finally:
        v.close()


def test_quit_q():
    quit_with("q")


def test_quit_escape():
    quit_with("Escape")


def test_quit_ctrl_c():
    quit_with("C-c")


def test_sigterm():
    quit_with(signal_to_send=signal.SIGTERM)


def test_sighup():
    # The terminal went away (a closed ssh session): the view still ends cleanly and closes the
    # source (with attach: detaches).
    quit_with(signal_to_send=signal.SIGHUP)


def test_sigsegv():
    # The crash handler restores the terminal and the process still dies of the signal.
    quit_with(signal_to_send=signal.SIGSEGV, expect_code=128 + signal.SIGSEGV, expect_close=False)


def test_sigabrt():
    quit_with(signal_to_send=signal.SIGABRT, expect_code=128 + signal.SIGABRT, expect_close=False)


def main():
    global DOUBLE
    if shutil.which("tmux") is None:
        print("SKIP: tmux is not installed (Debian package tmux)")
        return SKIP
    DOUBLE = os.path.abspath(sys.argv[1])
    wanted = sys.argv[2:]
    tests = [(name, fn) for name, fn in sorted(globals().items())
             if name.startswith("test_") and callable(fn) and (not wanted or name in wanted)]
    failed = []
    for name, fn in tests:
        start = time.monotonic()
        try:
            fn()
            print("ok   %s (%.1f s)" % (name, time.monotonic() - start), flush=True)
        except Failure as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            failed.append(name)
    if failed:
        print("%d of %d failed: %s" % (len(failed), len(tests), ", ".join(failed)))
        return 1
    print("all %d passed" % len(tests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
