"""The interactive `memray tree` in a real terminal (tmux), on a capture of a program with a known
call tree (targets/tree_target.py): the first screen, moving, collapsing, e, u, i, the detail
pane's numbers and source line, the narrow layout, q restoring the terminal; a --native capture
hides CPython's frames until u; and through a pipe or into a file the static tree, unchanged.

usage: test_tree_view.py MEMRAY TARGET_SCRIPT
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import mrtest
import pythons  # noqa: E402 (made importable by mrtest)

memray, script = sys.argv[1], os.path.abspath(sys.argv[2])
if shutil.which("tmux") is None:
    mrtest.skip("tmux is not installed (Debian package tmux)")
python = pythons.require("debian")

c = mrtest.Checker("tree-view")
work = mrtest.scratch_dir("tree")
sessions = 0  # one tmux server per view: a new one need not wait for the last one to go
socket = None
tmux_dir = tempfile.mkdtemp(prefix="memray-tree-tmux-")  # short: socket paths are limited

marks = {}
with open(script) as f:
    for n, line in enumerate(f, 1):
        m = re.search(r"# MARK: (\S+)", line)
        if m:
            marks[m.group(1)] = n


def tmux(*args, check=True):
    p = subprocess.run(["tmux", "-S", socket, "-f", "/dev/null", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError("tmux %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout.decode("utf-8", "replace")


def screen():
    return tmux("capture-pane", "-p", "-t", "t")


def wait_for(what, predicate, timeout=20):
    """The screen once predicate(screen) holds on two identical captures in a row (a capture can
    land mid-redraw); fails the check (and returns the last screen) when it does not within
    timeout seconds."""
    deadline = time.monotonic() + timeout
    last, text = None, screen()
    while not (predicate(text) and text == last):
        if time.monotonic() > deadline:
            c.check(False, what + "; the screen was:\n" + text)
            return text
        time.sleep(0.05)
        last, text = text, screen()
    c.check(True, what)
    return text


def keys(*names):
    tmux("send-keys", "-t", "t", *names)


width = 250  # of the tmux window: wide enough for the rows' absolute paths


def separator_column():
    # tree_view.cpp: the detail pane takes 2/5 of the width (at most 100 columns) from 70 on.
    return width - min(100, width * 2 // 5) - 1 if width >= 70 else None


def tree_rows(text):
    """Rows of the tree pane, without trailing blanks (every glyph the view draws is one
    column wide, so columns are string indices)."""
    col = separator_column()
    return [(line[:col] if col else line).rstrip() for line in text.splitlines()[1:-1]]


def detail(text):
    """The detail pane's lines, stripped (side by side only)."""
    col = separator_column()
    return [line[col + 1:].strip() for line in text.splitlines()[1:-1]]


def row_index(text, pattern):
    for i, row in enumerate(tree_rows(text)):
        if re.search(pattern, row):
            return i
    return None


def select(text, pattern, what):
    """Moves the selection to the first tree row matching pattern (Home, then Down)."""
    i = row_index(text, pattern)
    if not c.check(i is not None, "%s: a row matches %r" % (what, pattern)):
        return
    keys("Home")
    for _ in range(i):
        keys("Down")


def start(capture, height=45, extra=(), locale="C.UTF-8", pipe="", env=""):
    global socket, sessions
    if socket:
        tmux("kill-server", check=False)
    sessions += 1
    # A socket path of our own (not -L NAME in /tmp/tmux-UID), so none is left behind.
    socket = os.path.join(tmux_dir, "s%d" % sessions)
    cmd = ("stty -g > %(w)s/stty.before; LC_ALL=%(l)s %(e)s %(m)s tree %(x)s %(c)s %(p)s; echo TREE-EXIT=$?; "
           "stty -g > %(w)s/stty.after; sleep 600" %
           {"w": work, "m": memray, "c": capture, "x": " ".join(extra), "l": locale, "p": pipe, "e": env})
    tmux("-u", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "sh", "-c", cmd)


# A capture of the known program.
cap = os.path.join(work, "tree.bin")
p = mrtest.memray_run(memray, cap, [script], python=python)
if p.returncode != 0:
    c.check(False, "memray run of the target")
    c.finish()

try:
    start(cap, extra=("-b", "3"))
    text = wait_for("the tree opens", lambda t: "below the threshold" in t and "Size:" in t)

    # First screen: the root selected; root, <module>, main and the chain down to leaf_big open.
    rows = tree_rows(text)
    print("\n".join(rows))
    c.check(re.match(r"▼ \d+\.\d+MB \(100\.00 %\) \d+ allocations$", rows[0]) is not None,
            "the first row is the root with the view's total")
    order = [r"<module>  \S*tree_target\.py:", r"main  \S*:%d$" % marks["main-chain"],
             r"chain1  ", r"chain2  ", r"chain3  ", r"leaf_big  \S*:%d$" % marks["leaf_big"],
             r"main  \S*:%d$" % marks["main-import"], r"main  \S*:%d$" % marks["main-small"],
             r"allocations from \d+ locations below the threshold"]
    got = [row_index(text, pat) for pat in order]
    c.equal(got, list(range(1, len(order) + 1)), "rows of the first screen in memray's order")
    c.check(re.search(r"• 4\.000MB \(\d+\.\d\d %\) 1  leaf_big", text) is not None,
            "leaf_big is a leaf of 4.000MB in 1 allocation")
    c.check(re.search(r"▶ 3\.000MB \(\d+\.\d\d %\) 1  main", text) is not None,
            "the import's caller is closed, 3.000MB")
    c.check(re.search(r"▶ 2\.000MB \(\d+\.\d\d %\) 2  main", text) is not None,
            "small's caller is closed, 2.000MB in 2 allocations")
    c.check("_find_and_load" not in text, "import-system frames hidden at first")
    total = re.match(r"▼ (\d+\.\d+)MB \(100\.00 %\) (\d+) allocations", rows[0])
    d = detail(text)
    if total:
        c.check("Allocations: " + total.group(2) in d, "root detail: the allocations")
        c.check("Size: %sMB" % total.group(1) in d, "root detail: the size")
        share = 4.0 / float(total.group(1)) * 100
        m = re.search(r"4\.000MB \((\d+\.\d\d) %\)", text)
        c.check(m is not None and abs(float(m.group(1)) - share) < 0.1,
                "leaf_big's share of the root: %.2f %%" % share)
    footer = (r"q +Quit .* e +Expand linear group .* i +Hide import system"
              r" .* u +Show uninteresting")
    c.check(re.search(footer, text.splitlines()[-1]) is not None, "the footer names the keys")

    # Down to leaf_big: the detail pane shows its numbers and its source line.
    for _ in range(6):
        keys("Down")
    text = wait_for("leaf_big selected", lambda t: "Function: leaf_big" in t)
    d = detail(text)
    joined = " ".join(d)
    c.check("Allocations: 1" in d, "leaf_big detail: 1 allocation")
    c.check(any(re.match(r"Size: 4\.000MB \(\d+\.\d\d %\)$", x) for x in d), "leaf_big detail: 4.000MB")
    c.check(re.search(r"Location: .*tree_target\.py:%d" % marks["leaf_big"], joined) is not None
            or ("tree_target.py:%d" % marks["leaf_big"]) in joined, "leaf_big detail: file:line")
    c.check(any(re.match(r"Thread: MainThread \(tid \d+\)$", x) for x in d), "leaf_big detail: thread")
    c.check(any(re.match(r"%d\s+keep\.append\(bytearray\(4_000_000\)\)" % marks["leaf_big"], x)
                for x in d), "leaf_big detail: its source line")

    # Left on a leaf selects the caller; Left again closes it.
    keys("Left")
    text = wait_for("Left on a leaf selects chain3", lambda t: "Function: chain3" in t)
    keys("Left")
    text = wait_for("Left closes chain3", lambda t: row_index(t, r"leaf_big  ") is None)
    c.check(re.search(r"▶ 4\.000MB \(\d+\.\d\d %\) 1  chain3", text) is not None, "chain3 shows closed")
    keys("Right")
    text = wait_for("Right opens it again", lambda t: row_index(t, r"leaf_big  ") is not None)
    keys("Enter")
    text = wait_for("Enter closes it", lambda t: row_index(t, r"leaf_big  ") is None)

    # e on small's caller opens it and its single callee.
    select(text, r"main  \S*:%d$" % marks["main-small"], "small's caller")
    wait_for("small's caller selected", lambda t: "Function: main" in t and
             ("tree_target.py:%d" % marks["main-small"]) in " ".join(detail(t)))
    keys("e")
    text = wait_for("e opens the linear group",
                    lambda t: row_index(t, r"small  \S*:%d$" % marks["small"]) is not None)

    # u: the uninteresting frames (here the import system) appear; e opens the import's chain.
    keys("u")
    text = wait_for("u starts over with uninteresting frames shown",
                    lambda t: "Hide uninteresting" in t and row_index(t, r"small  ") is None)
    select(text, r"main  \S*:%d$" % marks["main-import"], "the import's caller")
    wait_for("the import's caller selected",
             lambda t: ("tree_target.py:%d" % marks["main-import"]) in " ".join(detail(t)))
    keys("e")
    text = wait_for("e opens the import system's chain down to tree_helper",
                    lambda t: row_index(t, r"<module>  \S*tree_helper\.py:2$") is not None)
    c.check(row_index(text, r"_find_and_load  <frozen importlib") is not None,
            "_find_and_load shown with u")
    frames = [i for i in (row_index(text, p) for p in
              (r"main  \S*:%d$" % marks["main-import"], r"_find_and_load  ", r"_load_unlocked  ",
               r"<module>  \S*tree_helper\.py")) if i is not None]
    c.check(len(frames) == 4 and frames == sorted(frames), "the import chain in call order")

    # i: the import system goes with its callees; its caller keeps the 3 MB.
    keys("i")
    text = wait_for("i hides the import system", lambda t: "Show import system" in t)
    c.check("_find_and_load" not in text and "tree_helper" not in text,
            "no import-system frame and no callee of it")
    c.check(re.search(r"• 3\.000MB \(\d+\.\d\d %\) 1  main  \S*:" + str(marks["main-import"]), text)
            is not None, "the import's caller keeps its 3.000MB, now a leaf")
    keys("u")
    text = wait_for("u hides uninteresting frames again", lambda t: "Show uninteresting" in t)
    keys("i")
    text = wait_for("i shows the import system again", lambda t: "Hide import system" in t)

    # The elided row and its explanation.
    keys("End")
    text = wait_for("the last row explains the threshold",
                    lambda t: "--biggest-allocs" in " ".join(detail(t)))

    # Narrow: the detail pane goes below the tree.
    width = 60
    tmux("resize-window", "-t", "t", "-x", "60", "-y", "40")
    keys("Home")
    text = wait_for("narrow layout: details below the tree",
                    lambda t: any(l.startswith("─" * 20) for l in t.splitlines())
                    and any(l.startswith((" Size: ", " Allocations: ")) for l in t.splitlines()))

    # q ends the view, restores the terminal's modes and leaves the screen to the shell.
    keys("q")
    text = wait_for("q quits with status 0", lambda t: "TREE-EXIT=0" in t)
    wait_for("the terminal modes are saved after the view",
             lambda t: os.path.exists(os.path.join(work, "stty.after")) and
             os.path.getsize(os.path.join(work, "stty.after")) > 0)
    with open(os.path.join(work, "stty.before")) as a, open(os.path.join(work, "stty.after")) as b:
        c.equal(b.read(), a.read(), "stty settings after q")
    c.check("below the threshold" not in text, "the tree's screen is gone after q")

    # --native: CPython's own frames hidden until u.
    capn = os.path.join(work, "native.bin")
    p = mrtest.memray_run(memray, capn, [script], python=python, native=True)
    if c.check(p.returncode == 0, "memray run --native of the target"):
        width = 250
        start(capn, extra=("-b", "3"))
        text = wait_for("the native tree opens", lambda t: "below the threshold" in t)
        py = re.compile(r"  _?Py[A-Z_]\w*  |python3")
        c.check(not any(py.search(r) for r in tree_rows(text)[1:]), "no CPython frame before u")
        c.check(row_index(text, r"leaf_big  ") is not None, "leaf_big shown in the native tree")
        keys("u")
        text = wait_for("u shows CPython's frames in the native tree",
                        lambda t: "Hide uninteresting" in t
                        and any(py.search(r) for r in tree_rows(t)[1:]))
        keys("q")
        wait_for("q quits the native tree", lambda t: "TREE-EXIT=0" in t)

    # On a terminal but piped: stdout decides, the static tree is printed.
    start(cap, extra=("-b", "3"), pipe="| cat")
    text = wait_for("`memray tree | cat` on a terminal prints the static tree and exits",
                    lambda t: "TREE-EXIT=0" in t)
    c.check("└── 📄 4.000MB" in text and "smaller locations not shown" in text
            and "Quit" not in text, "the static tree, not the interactive one")

    # A terminal ncurses does not know: the static tree rather than an error.
    start(cap, extra=("-b", "3"), env="TERM=memray-no-such-terminal")
    text = wait_for("an unknown TERM prints the static tree and exits",
                    lambda t: "TREE-EXIT=0" in t)
    c.check("└── 📄 4.000MB" in text and "Quit" not in text, "the static tree under an unknown TERM")

    # --temporary-allocations as the static tree has it; ASCII lines when the locale is not UTF-8.
    width = 250
    start(cap, extra=("-b", "3", "--temporary-allocations"), locale="C")
    text = wait_for("the temporary allocations' tree opens in ASCII",
                    lambda t: t.startswith("Temporary allocations") and "Size: " in t)
    c.check(re.match(r"- \d+\.\d+k?B \(100\.00 %\) \d+ allocations", tree_rows(text)[0])
            is not None and any(r.startswith(("|-- ", "`-- ")) for r in tree_rows(text)),
            "ASCII glyphs: '-' for an open node, '|-- ' and '`-- ' connectors")
    c.check("▼" not in text and "│" not in text, "no UTF-8 line drawing in the C locale")
    keys("q")
    wait_for("q quits the temporary allocations' tree", lambda t: "TREE-EXIT=0" in t)

    # A deep stack scrolls the pane left so that the selected row's label stays in view. The
    # 0.1 MB at the end is the location `-b 1` elides: the last row, below the deepest frame.
    deep_script = os.path.join(work, "deep.py")
    with open(deep_script, "w") as f:
        f.write("keep = []\n\n\ndef deep(n):\n    if n == 0:\n"
                "        keep.append(bytearray(5_000_000))\n    else:\n        deep(n - 1)\n\n\n"
                "deep(60)\nkeep.append(bytearray(100_000))\n")
    capd = os.path.join(work, "deep.bin")
    p = mrtest.memray_run(memray, capd, [deep_script], python=python)
    if c.check(p.returncode == 0, "memray run of a 60-deep recursion"):
        width = 120
        start(capd, extra=("-b", "1"))
        text = wait_for("the deep tree opens", lambda t: "Size: " in t and "deep.py:8" in t)
        keys("End")
        keys("Up")
        text = wait_for("the deepest frame selected", lambda t: "Function: deep" in t and
                        "deep.py:6" in " ".join(detail(t)))
        # Unscrolled, the leaf's label would start at column 62 * 4 of a 71-column pane.
        row = [r for r in tree_rows(text) if re.search(r"• 5\.000MB \(\d+\.\d\d %\) 1  deep", r)]
        c.check(len(row) == 1 and row[0].find("5.000MB") < separator_column() // 2 + 8,
                "scrolled left: the deepest row's label shows in the left half of the pane")
        keys("Home")
        text = wait_for("Home scrolls back",
                        lambda t: re.search(r"^▼ 5\.\d+MB \(100\.00 %\)", t, re.M))
        keys("q")
        wait_for("q quits the deep tree", lambda t: "TREE-EXIT=0" in t)
finally:
    if socket:
        tmux("kill-server", check=False)
    shutil.rmtree(tmux_dir, ignore_errors=True)

# Not a terminal: the static tree, the same through a pipe and into a file, without colours.
piped = mrtest.run([memray, "tree", "-b", "3", cap])
out_path = os.path.join(work, "tree.txt")
with open(out_path, "w") as f:
    p = subprocess.run([memray, "tree", "-b", "3", cap], stdout=f, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=120)
with open(out_path) as f:
    filed = f.read()
c.equal(p.returncode, 0, "memray tree > file")
c.check(piped.returncode == 0 and piped.stdout == filed,
        "the same static tree through a pipe and into a file")
c.check("📂" in filed and "└── 📄 4.000MB" in filed and "\x1b[" not in filed,
        "the static tree, without colours")
c.check("_find_and_load" in filed, "the static tree shows the import system as before")
c.finish()
