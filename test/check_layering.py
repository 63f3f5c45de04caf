#!/usr/bin/env python3
"""Keeps the stages' dependencies pointing one way (STYLE.md) and the payload lean.

1. Includes: src/format includes only format/; src/payload only format/ and payload/;
   src/report never payload/; src/launch only format/ and launch/; nothing but src/cli includes
   CLI11.
2. The built payload needs only libc, libunwind, lz4 (and the loader) at run time, and imports
   no C++ runtime or exception machinery (it is loaded into arbitrary processes).
"""
import pathlib
import re
import subprocess
import sys

root = pathlib.Path(sys.argv[1])
payload = sys.argv[2]
problems = []

allowed = {
    "format": {"format"},
    "payload": {"format", "payload"},
    "report": {"format", "report"},
    "launch": {"format", "launch"},
    "cli": {"format", "report", "cli", "attach", "inject", "launch"},
}
include_re = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]', re.M)
for stage, ok in allowed.items():
    for f in sorted((root / "src" / stage).rglob("*.[ch]pp")):
        for inc in include_re.findall(f.read_text(errors="replace")):
            top = inc.split("/")[0]
            if "/" in inc and top in allowed and top not in ok:
                problems.append(f"{f.relative_to(root)} includes {inc} ({stage} may not depend on {top})")
            if inc.startswith("CLI/") and stage != "cli":
                problems.append(f"{f.relative_to(root)} includes CLI11")
            if inc.startswith("llvm/") and stage in ("format", "payload"):
                problems.append(f"{f.relative_to(root)} includes LLVM")

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

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"layering ok; payload needs {', '.join(needed)}")
