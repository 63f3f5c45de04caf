#!/usr/bin/python3
"""Benchmark of native symbolisation: time and peak memory of report::Symbolizer on a
capture-like set of distinct native return addresses.

usage: /usr/bin/python3 bench/bench_symbolize.py [--build DIR] [--addresses N] [--libs PATH,...]

The addresses are every call-return address (the instruction after each `call`, found with
`objdump -d`) in the pyenv interpreters' libpython3.11/3.12/3.13 (which carry DWARF), evenly
sampled down to N (default 100000), each object placed at a made-up load bias as a PIE library
would be. bench/bench_symbolize (built when missing) symbolises each address once, as a report
does; this prints addresses/s, the first (cold: nothing cached in the process) pass, the cached
pass, and the driver's peak RSS (wait4). The page cache is not dropped (that needs root and
disturbs others), so "cold" means a fresh process, not a cold disk.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CALL = re.compile(r"^\s*([0-9a-f]+):\s+call")


def default_libs():
    home = os.path.expanduser("~/.pyenv/versions")
    libs = []
    for minor in ("3.11", "3.12", "3.13"):
        libs += sorted(glob.glob(os.path.join(home, minor + ".*", "lib", "libpython%s.so.1.0" % minor)))[-1:]
    return libs


def build_id(path):
    out = subprocess.run(["readelf", "-n", path], stdout=subprocess.PIPE, check=True).stdout.decode()
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if m else ""


def return_addresses(path):
    """File addresses right after each call instruction of `path`."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    lines = out.splitlines()
    result = []
    for i, line in enumerate(lines):
        if CALL.match(line):
            for nxt in lines[i + 1:i + 4]:
                m = re.match(r"^\s*([0-9a-f]+):", nxt)
                if m:
                    result.append(int(m.group(1), 16))
                    break
    return sorted(set(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--addresses", type=int, default=100000)
    ap.add_argument("--libs", help="comma-separated objects (default: pyenv libpython 3.11-3.13)")
    a = ap.parse_args()
    libs = a.libs.split(",") if a.libs else default_libs()
    if not libs:
        sys.exit("no libpython under ~/.pyenv/versions (give --libs)")
    driver = os.path.join(a.build, "bench", "bench_symbolize")
    if not os.path.exists(driver):
        subprocess.run(["ninja", "-C", a.build, "-j2", "bench/bench_symbolize"], check=True,
                       stdout=subprocess.DEVNULL)

    objects, pool = [], []
    for index, lib in enumerate(libs):
        bias = 0x7f0000000000 + index * 0x10000000
        objects.append("%s:%x:%s" % (lib, bias, build_id(lib)))
        pool += [(index, bias + addr) for addr in return_addresses(lib)]
    if len(pool) > a.addresses:
        step = len(pool) / a.addresses
        pool = [pool[int(i * step)] for i in range(a.addresses)]

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for index, addr in pool:
            f.write("%d %x\n" % (index, addr))
        listing = f.name
    try:
        t0 = time.monotonic()
        p = subprocess.Popen([driver, listing] + objects, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        out, err = p.stdout.read().decode(), p.stderr.read().decode()
    finally:
        os.unlink(listing)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("driver failed:\n" + err)
    r = json.loads(out.strip().splitlines()[-1])
    print("objects: %s" % ", ".join(os.path.basename(lib) for lib in libs))
    print("distinct addresses:        %d" % r["addresses"])
    print("first pass (cold process): %.2f s  (%.0f addresses/s)" % (r["first_pass_s"], r["addresses"] / r["first_pass_s"]))
    print("cached pass:               %.3f s" % r["cached_pass_s"])
    print("driver wall time:          %.2f s (process start, reading the list, both passes)" % wall)
    print("peak RSS:                  %.1f MB" % (usage.ru_maxrss / 1024))
    print("resolved: function %d, file:line %d, with inlined frames %d, %d frames in all, %d warnings"
          % (r["with_function"], r["with_line"], r["with_inlined"], r["frames"], r["warnings"]))
    compare_llvm_symbolizer(libs, objects, pool, wall, usage.ru_maxrss / 1024)
    if err.strip():
        print(err.strip(), file=sys.stderr)


def compare_llvm_symbolizer(libs, objects, pool, our_wall, our_rss_mb):
    """The same addresses through LLVM's own command-line tool (one process per object, as it
    takes one --obj), for a ratio measured in the same run."""
    tool = shutil.which("llvm-symbolizer-14") or shutil.which("llvm-symbolizer")
    if not tool:
        print("llvm-symbolizer: not installed, no comparison")
        return
    wall, rss = 0.0, 0.0
    for index, lib in enumerate(libs):
        bias = int(objects[index].split(":")[1], 16)
        addrs = "".join("0x%x\n" % (addr - bias) for i, addr in pool if i == index)
        t0 = time.monotonic()
        p = subprocess.Popen([tool, "--inlines", "--obj=" + lib], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.stdin.write(addrs.encode())
        p.stdin.close()
        _, _, usage = os.wait4(p.pid, 0)
        p.returncode = 0  # reaped by wait4
        wall += time.monotonic() - t0
        rss = max(rss, usage.ru_maxrss / 1024)
    print("%s --inlines, same addresses: %.2f s wall in all, peak RSS %.1f MB"
          % (os.path.basename(tool), wall, rss))
    print("ratio ours / llvm-symbolizer: wall %.2fx, peak RSS %.2fx"
          % (our_wall / wall, our_rss_mb / rss if rss else float("nan")))


if __name__ == "__main__":
    main()
