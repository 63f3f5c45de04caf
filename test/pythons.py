"""The Python interpreters the tests run against: one list and one lookup, shared by every test.

Test drivers `import pythons` (test/ is on their PYTHONPATH); meson runs this file at configure
time (`python3 test/pythons.py`), which prints one `KEY<TAB>PATH` line per interpreter (PATH empty
when it is missing), so the meson test lists come from the same place. Keys: "3.8" ... "3.13"
(the newest patch release under $PYENV_ROOT/versions, default ~/.pyenv) and "debian"
(/usr/bin/python3). A test whose interpreter is missing skips (exit 77) with the reason.
"""

import glob
import os
import re
import sys

VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
KEYS = VERSIONS + ["debian"]
DEBIAN = "/usr/bin/python3"


def pyenv_root():
    return os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")


def _patch_level(path, version):
    m = re.search(r"/%s\.(\d+)/bin/python$" % re.escape(version), path)
    return int(m.group(1)) if m else -1


def find(key):
    """Path of the interpreter for `key`, or None when this machine does not have it."""
    if key == "debian":
        return DEBIAN if os.access(DEBIAN, os.X_OK) else None
    if key not in VERSIONS:
        raise ValueError("unknown interpreter key %r (known: %s)" % (key, ", ".join(KEYS)))
    found = [p for p in glob.glob(os.path.join(pyenv_root(), "versions", key + ".*", "bin", "python"))
             if _patch_level(p, key) >= 0 and os.access(p, os.X_OK)]
    return max(found, key=lambda p: _patch_level(p, key)) if found else None


def missing_reason(key):
    if key == "debian":
        return "Debian's python3 (%s) is not installed" % DEBIAN
    return "no Python %s interpreter under %s/versions" % (key, pyenv_root())


def require(key):
    """The interpreter for `key`, or exit 77 (meson's skip) with the reason."""
    path = find(key)
    if path is None:
        print("SKIP: " + missing_reason(key))
        sys.exit(77)
    return path


def available(keys=KEYS):
    """(key, path) of every interpreter this machine has, in KEYS order."""
    return [(k, p) for k, p in ((k, find(k)) for k in keys) if p]


if __name__ == "__main__":
    for key in KEYS:
        print("%s\t%s" % (key, find(key) or ""))
