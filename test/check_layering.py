#!/usr/bin/env python3
"""Keeps the stages' dependencies pointing one way (STYLE.md) and the payload lean.

usage: check_layering.py SOURCE_ROOT PAYLOAD_SO [REPORT_CORE_A]

1. Includes between our stages. Every directory under src/ must be a stage listed in ALLOWED
   (a new stage states its dependencies here before it builds); a stage includes only the stages
   listed for it. Quoted includes are resolved like the compiler does (next to the including
   file first, then src/), so "../payload/x.hpp" counts as payload too.
2. Third-party headers: CLI11 only in cli; LLVM only in the .cpp files of inject and of the
   report's symbolizer (their headers stay LLVM-free, so a front-end can use the reader and the
   reporters without LLVM); fmt never in format, payload or attach.
3. The built payload needs only libc, libunwind, lz4 (and the loader) at run time, and imports
   no C++ runtime or exception machinery (it is loaded into arbitrary processes).
4. The report library without the symbolizer (meson's report_core_dep) refers to nothing of
   LLVM, so a front-end can link the reader and the reporters without loading LLVM.
"""
import pathlib
import re
import subprocess
import sys

root = pathlib.Path(sys.argv[1]).resolve()
payload = sys.argv[2]
report_core = sys.argv[3] if len(sys.argv) > 3 else None
src = root / "src"
problems = []

# stage -> stages it may include (itself always). inject uses two dependency-free payload headers
# only: api.hpp (the exported entry points and the status block it reads from the target) and
# hook_list.hpp (the hooked names it plants safe points on); and format's settings contract,
# which it writes into the target.
ALLOWED = {
    "format": set(),
    "payload": {"format"},
    "attach": set(),
    "inject": {"attach", "format/settings.hpp", "payload/api.hpp", "payload/hook_list.hpp"},
    "report": {"format"},
    "launch": {"format"},
    # the Python extension module: the reader and reporters, and the payload's exported API
    # (the Tracker loads the payload in-process and starts it through it)
    "python": {"format", "report", "live", "payload/api.hpp"},
    # the live stream: a socket reader and the model of what is alive now (src/live/source.hpp
    # is the view's contract); the terminal layer and its views, which only poll that contract
    "live": {"format", "report"},
    "tui": {"live/source.hpp", "report"},
    "cli": {"format", "payload", "attach", "inject", "report", "launch", "live", "tui"},
}
LLVM_OK = ("inject/*.cpp", "report/symbolizer*.cpp")
FMT_FORBIDDEN = ("format", "payload", "attach")

include_re = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]', re.M)


def stage_of(path):
    """(stage, path below src/) of a file inside src/, else None."""
    try:
        rel = path.resolve().relative_to(src)
    except ValueError:
        return None
    return rel.parts[0], rel.as_posix()


def target_of(f, delim, inc):
    """The file of ours an include names, else None (system and third-party headers)."""
    candidates = [src / inc]
    if delim == '"':
        candidates.insert(0, f.parent / inc)
    for c in candidates:
        if c.is_file():
            return stage_of(c)
    return None


for d in sorted(p for p in src.iterdir() if p.is_dir()):
    if d.name not in ALLOWED:
        problems.append(f"src/{d.name} is not a known stage: add its allowed dependencies to "
                        f"test/check_layering.py")

for stage, ok in ALLOWED.items():
    for f in sorted((src / stage).rglob("*.[ch]pp")):
        name = f.relative_to(root)
        rel_src = f.relative_to(src).as_posix()
        for delim, inc in include_re.findall(f.read_text(errors="replace")):
            target = target_of(f, delim, inc)
            if target is not None:
                top, rel = target
                if top != stage and top not in ok and rel not in ok:
                    problems.append(f"{name} includes {inc} ({stage} may not depend on {top})")
                continue
            if inc.startswith("CLI/") and stage != "cli":
                problems.append(f"{name} includes CLI11 (only cli parses command lines)")
            if inc.startswith(("llvm/", "llvm-c/")) and not any(
                    pathlib.PurePosixPath(rel_src).match(p) for p in LLVM_OK):
                problems.append(f"{name} includes LLVM (allowed only in {', '.join(LLVM_OK)})")
            if inc.startswith("fmt/") and stage in FMT_FORBIDDEN:
                problems.append(f"{name} includes fmt ({stage} may not use it)")

dyn = subprocess.run(["readelf", "-d", payload], capture_output=True, text=True, check=True).stdout
needed = re.findall(r"\(NEEDED\).*\[(.+)\]", dyn)
ok_libs = re.compile(r"^(libc\.so|libunwind(-x86_64)?\.so|liblz4\.so|libm\.so|libdl\.so|libpthread\.so|ld-linux)")
for lib in needed:
    if not ok_libs.match(lib):
        problems.append(f"payload needs {lib} (allowed: libc, libunwind, lz4)")

undef = subprocess.run(["nm", "-D", "--undefined-only", payload], capture_output=True, text=True,
                       check=True).stdout.split()
for sym in undef:
    sym = sym.split("@")[0]
    if sym == "__cxa_finalize":  # imported by crtbegin of every shared library, C ones included
        continue
    if sym.startswith("_Z") or sym.startswith("__cxa_") or "gxx_personality" in sym or sym == "_Unwind_Resume":
        problems.append(f"payload imports C++ runtime symbol {sym}")

if report_core:
    undef = subprocess.run(["nm", "-u", "-C", report_core], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    llvm = sorted({line.strip()[2:] for line in undef
                   if line.strip().startswith("U ") and "llvm::" in line})
    for sym in llvm[:5]:
        problems.append(f"{pathlib.Path(report_core).name} (report without the symbolizer) "
                        f"refers to LLVM: {sym}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"layering ok ({', '.join(sorted(p.name for p in src.iterdir() if p.is_dir()))}); "
      f"payload needs {', '.join(needed)}")
