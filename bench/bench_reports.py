#!/usr/bin/python3
"""Benchmark of the report side: wall time and peak memory of `memray flamegraph`, `table`,
`stats`, `summary`, `tree` and `transform csv` on synthetic captures of growing size, and the
HTML page's size and time to first render in headless Chromium.

usage: /usr/bin/python3 bench/bench_reports.py [--build DIR] [--events N[,N...]] [--stacks N]
                                               [--keep DIR]

Captures come from bench/make_capture (a Python-service-like workload, ~20000 stacks; default
sizes 10 M and 100 M events) and test/web/make_wide_capture (one live allocation on each of
--stacks distinct stacks, default 1 M). Both targets are built on demand. Peak memory is each
command's own maximum RSS (wait4). The render time is from navigation to the page's first
drawn flame graph (body[data-rendered]) in /usr/bin/chromium, through playwright-core from the
build tree (build/web/npm).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RENDER_JS = r"""
const { chromium } = require(process.argv[2]);
(async () => {
  const browser = await chromium.launch({ executablePath: process.argv[4], args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const t0 = Date.now();
  await page.goto('file://' + process.argv[3]);
  await page.waitForSelector('body[data-rendered]', { timeout: 120000 });
  const ms = Date.now() - t0;
  const frames = await page.evaluate(() => document.querySelectorAll('g.frame').length);
  console.log(JSON.stringify({ ms, frames, errors }));
  await browser.close();
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
"""


def measure(cmd):
    """Runs cmd; returns (seconds, peak RSS in bytes)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s\n" % (p.returncode, " ".join(cmd), err[-2000:]))
        return None, None
    return dt, usage.ru_maxrss * 1024


def mb(n):
    return "%.1f MB" % (n / 1e6)


def ensure_target(build, target):
    path = os.path.join(build, target)
    if not os.path.exists(path):
        subprocess.run(["ninja", "-C", build, "-j2", target], check=True,
                       stdout=subprocess.DEVNULL)
    return path


def render_time(build, html):
    chromium = os.environ.get("MEMRAY_CHROMIUM", "/usr/bin/chromium")
    modules = os.path.abspath(os.path.join(build, "web", "npm", "node_modules", "playwright-core"))
    if not (os.path.exists(chromium) and os.path.isdir(modules) and shutil.which("node")):
        return None
    import json
    with tempfile.NamedTemporaryFile("w", suffix=".cjs", delete=False) as f:
        f.write(RENDER_JS)
        script = f.name
    try:
        p = subprocess.run(["node", script, modules, os.path.abspath(html), chromium],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        return json.loads(p.stdout.decode().strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - report and go on
        return {"error": str(e)}
    finally:
        os.unlink(script)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", default="10000000,100000000")
    ap.add_argument("--stacks", type=int, default=1000000)
    ap.add_argument("--keep", help="directory for the captures (kept)")
    a = ap.parse_args()
    memray = os.path.join(a.build, "src", "cli", "memray")
    if not os.path.exists(memray):
        sys.exit("no memray in %s (--build)" % a.build)
    make_capture = ensure_target(a.build, "bench/make_capture")
    make_wide = ensure_target(a.build, "test/web/make_wide_capture")
    work = a.keep or tempfile.mkdtemp(prefix="mr-bench-reports-")
    os.makedirs(work, exist_ok=True)

    captures = []
    for n in [int(x) for x in a.events.split(",") if x]:
        path = os.path.join(work, "service-%d.bin" % n)
        if not os.path.exists(path):
            subprocess.run([make_capture, path, str(n)], check=True, stdout=subprocess.DEVNULL)
        captures.append(("service", n, path))
    wide = os.path.join(work, "wide-%d.bin" % a.stacks)
    if not os.path.exists(wide):
        subprocess.run([make_wide, wide, str(a.stacks)], check=True, stdout=subprocess.DEVNULL)
    captures.append(("%d stacks" % a.stacks, a.stacks, wide))

    commands = [
        ("flamegraph", lambda c, o: [memray, "flamegraph", "-f", "-o", o + ".fg.html", c]),
        ("flamegraph --temporal", lambda c, o: [memray, "flamegraph", "--temporal", "-f", "-o", o + ".tfg.html", c]),
        ("table", lambda c, o: [memray, "table", "-f", "-o", o + ".table.html", c]),
        ("stats", lambda c, o: [memray, "stats", c]),
        ("summary", lambda c, o: [memray, "summary", c]),
        ("tree", lambda c, o: [memray, "tree", c]),
        ("transform csv", lambda c, o: [memray, "transform", "csv", "-f", "-o", o + ".csv", c]),
    ]
    rows = []
    for kind, n, path in captures:
        size = os.path.getsize(path)
        for name, make in commands:
            out = os.path.join(work, os.path.basename(path))
            dt, rss = measure(make(path, out))
            if dt is None:
                rows.append((kind, n, size, name, None, None, None))
                continue
            rows.append((kind, n, size, name, dt, rss, n / dt if kind == "service" else None))
            print("  %-14s %-22s %7.2f s  %9s" % (kind, name, dt, mb(rss)), file=sys.stderr)

    print()
    print("%-14s %12s %10s  %-22s %9s %10s %14s" % ("capture", "events", "file", "command",
                                                    "wall", "peak RSS", "events/s"))
    for kind, n, size, name, dt, rss, rate in rows:
        events = "%d" % n if kind == "service" else "-"
        if dt is None:
            print("%-14s %12s %10s  %-22s %9s" % (kind, events, mb(size), name, "failed"))
            continue
        print("%-14s %12s %10s  %-22s %8.2fs %10s %14s" % (
            kind, events, mb(size), name, dt, mb(rss), "%.1f M" % (rate / 1e6) if rate else "-"))

    print()
    print("%-40s %10s %12s %10s" % ("page", "size", "first render", "frames"))
    for kind, n, path in captures[-2:]:
        for suffix in (".fg.html", ".tfg.html", ".table.html"):
            html = os.path.join(work, os.path.basename(path) + suffix)
            if not os.path.exists(html):
                continue
            r = render_time(a.build, html)
            shown = "-" if r is None else ("error" if "error" in r else "%d ms" % r["ms"])
            frames = "-" if not r or "frames" not in r else str(r["frames"])
            print("%-40s %10s %12s %10s" % (os.path.basename(html), mb(os.path.getsize(html)),
                                            shown, frames))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
