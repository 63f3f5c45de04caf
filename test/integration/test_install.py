"""An installed memray uses its own payload, not the build tree's (issue 10).

usage: test_install.py MEMRAY BUILD_DIR BINDIR PAYLOAD MESON STEADY_ALLOC

`meson install --destdir` into a temporary root (nothing else hidden: the build tree stays where
it is), then `memray run` (native and Python) and `memray attach` from that root. Which payload
was loaded is read from /proc/PID/maps of the tracked process, so a memray that picks up the
build tree's payload fails here. Then the root is moved (the install must be relocatable) and
its payload removed (memray must say so instead of falling back to the build tree). BINDIR and
PAYLOAD are the configured install paths (prefix/bindir, prefix/libdir/memray/...).
"""

import os
import shutil
import subprocess
import sys
import threading

import mrtest


def loaded_payloads(maps_text):
    """Paths of every libmemray-payload.so mapping in a /proc/PID/maps text."""
    paths = set()
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].endswith("libmemray-payload.so"):
            paths.add(fields[5])
    return paths


def check_payload(c, text, expected, what):
    found = loaded_payloads(text)
    c.equal(found, {os.path.realpath(expected)}, "%s: payload loaded from" % what)


def check_capture(c, memray, capture, what):
    p = mrtest.run([memray, "summary", capture])
    c.check(p.returncode == 0 and "Location" in p.stdout,
            "%s: the capture reads back (summary exit %d)" % (what, p.returncode))


def main():
    memray_build, build_dir, bindir, payload_conf, meson, steady = sys.argv[1:7]
    c = mrtest.Checker("install")
    for var in ("MEMRAY_PAYLOAD", "LD_PRELOAD"):
        os.environ.pop(var, None)
    work = mrtest.scratch_dir("install")
    root = os.path.join(work, "root")

    p = mrtest.run([meson, "install", "-C", build_dir, "--no-rebuild", "--quiet", "--destdir", root],
                   timeout=300)
    if p.returncode != 0:
        print(p.stdout + p.stderr)
        mrtest.skip("meson install --destdir failed (exit %d)" % p.returncode)
    memray = root + os.path.join(bindir, "memray")
    installed_payload = root + payload_conf
    if not c.check(os.access(memray, os.X_OK) and os.path.exists(installed_payload),
                   "installed memray and payload under the destdir root"):
        c.finish()
    build_payload = subprocess.run(
        [memray_build, "run", "-q", "-o", os.path.join(work, "b.bin"), "--", "/bin/cat",
         "/proc/self/maps"], stdout=subprocess.PIPE, text=True)
    c.equal(build_payload.returncode, 0, "build-tree memray run")
    build_paths = loaded_payloads(build_payload.stdout)
    c.check(len(build_paths) == 1 and all(not x.startswith(root) for x in build_paths),
            "the build-tree memray uses the build tree's payload (%s)" % sorted(build_paths))

    # memray run, native: the program prints its own maps.
    out = os.path.join(work, "native.bin")
    p = mrtest.run([memray, "run", "-o", out, "--", "/bin/cat", "/proc/self/maps"])
    c.equal(p.returncode, 0, "installed memray run -- cat")
    check_payload(c, p.stdout, installed_payload, "installed memray run -- cat")
    check_capture(c, memray, out, "installed memray run -- cat")

    # memray run, Python: the bootstrap loads the payload with ctypes.
    out = os.path.join(work, "python.bin")
    p = mrtest.run([memray, "run", "-o", out, "-c",
                    "import sys; sys.stdout.write(open('/proc/self/maps').read())"])
    c.equal(p.returncode, 0, "installed memray run -c")
    check_payload(c, p.stdout, installed_payload, "installed memray run -c")

    # memray attach: the target's maps, read from here.
    target = subprocess.Popen([steady, "4096", "100000"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        first = target.stdout.readline()  # running main(): libc is there, safe points come
        threading.Thread(target=lambda: target.stdout.read(), daemon=True).start()
        if not c.check(first.startswith(b"ALLOC"), "attach target started"):
            c.finish()
        out = os.path.join(work, "attach.bin")
        p = mrtest.run([memray, "attach", "-v", "-o", out, str(target.pid)])
        if p.returncode != 0 and ("not permitted" in p.stderr or "ptrace" in p.stderr.lower()):
            print(p.stderr)
            mrtest.skip("attach is not permitted here")
        c.equal(p.returncode, 0, "installed memray attach")
        with open("/proc/%d/maps" % target.pid) as f:
            check_payload(c, f.read(), installed_payload, "installed memray attach")
        p = mrtest.run([memray, "detach", str(target.pid)])
        c.equal(p.returncode, 0, "installed memray detach")
        check_capture(c, memray, out, "installed memray attach")
    finally:
        target.kill()
        target.wait()

    # Moved elsewhere, the install still finds its payload next to itself.
    moved = os.path.join(work, "moved")
    os.rename(root, moved)
    memray = moved + os.path.join(bindir, "memray")
    moved_payload = moved + payload_conf
    p = mrtest.run([memray, "run", "-o", os.path.join(work, "moved.bin"), "--", "/bin/cat",
                    "/proc/self/maps"])
    c.equal(p.returncode, 0, "moved install: memray run")
    check_payload(c, p.stdout, moved_payload, "moved install: memray run")

    # Without its payload it says so; the build tree's payload is no fallback.
    os.unlink(moved_payload)
    missing_out = os.path.join(work, "missing.bin")
    p = mrtest.run([memray, "run", "-o", missing_out, "--", "/bin/true"])
    c.equal(p.returncode, 1, "install without its payload: memray run fails")
    c.check(("memray: error: cannot use the payload " + os.path.normpath(moved_payload)) in p.stderr,
            "install without its payload: 'cannot use the payload' names the missing one")
    c.check(not os.path.exists(missing_out), "install without its payload: nothing was run")
    shutil.rmtree(moved, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
