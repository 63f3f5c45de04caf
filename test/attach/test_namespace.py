"""Attach to a target in its own mount namespace (`unshare --mount`), where /tmp is a private
tmpfs and the directory holding our payload is hidden under another tmpfs, as in a container:
attach works, the capture appears at the path the CLI was given (relative to the CLI's cwd, on
the host side), nothing is written inside the target's namespace, and the capture holds what the
target did.

usage: test_namespace.py MEMRAY NATIVE_SERVICE PAYLOAD
"""

import os
import re
import shutil
import subprocess
import sys

import attachtest as at
import mrtest


def main():
    memray, exe, payload = (os.path.realpath(a) for a in sys.argv[1:4])
    at.require_attach(memray)
    if os.geteuid() != 0:
        mrtest.skip("mount namespaces with tmpfs mounts need root")
    if not shutil.which("unshare"):
        mrtest.skip("unshare (util-linux) not installed")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /tmp"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    if probe.returncode != 0:
        mrtest.skip("cannot make a mount namespace here: " + probe.stdout.decode().strip())

    c = mrtest.Checker("attach-namespace")
    work = mrtest.scratch_dir("at-ns")
    payload_dir = os.path.dirname(os.path.realpath(payload))
    # cwd /tmp (the private tmpfs): a relative path handed to the target as-is would land there.
    # The target binary is opened before any mount: the checkout itself may live under /tmp.
    script = ('exec 3<"$1" && mount -t tmpfs none "$2" && mount -t tmpfs none /tmp && '
              'cat <&3 >/tmp/svc && exec 3<&- && chmod +x /tmp/svc && cd /tmp && exec /tmp/svc')
    t = at.Target(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                   exe, payload_dir], cwd=work)
    ready = t.expect(r"^ready ")
    if not c.check(ready is not None, "target ready in its namespace"):
        t.kill()
        c.finish()
    pid = t.pid  # sh execs the service, so the pid is the target's
    root = "/proc/%d/root" % pid
    c.check(os.readlink("/proc/%d/ns/mnt" % pid) != os.readlink("/proc/self/ns/mnt"),
            "target runs in another mount namespace")
    c.check(not os.path.exists(root + os.path.realpath(payload)),
            "the payload path does not exist inside the target's namespace")
    c.check(not os.path.exists(root + work), "the CLI's directory does not exist in there either")

    capture_name = "ns.bin"
    capture = os.path.join(work, capture_name)
    p = at.attach(memray, pid, capture_name, cwd=work)
    if not at.check_attached(c, p, "attach into the namespace"):
        t.kill()
        c.finish()
    c.check(t.request("a 3", r"^done a 3") is not None, "requests while attached")
    c.check(t.request("m 2", r"^done m 2") is not None, "main-thread leaks while attached")
    p = at.detach(memray, pid)
    at.check_detached(c, p, capture, "detach")
    c.check(t.running(), "target running after detach")
    c.check(not os.path.exists(os.path.join(root + "/tmp", capture_name)),
            "nothing written at the relative path inside the target's namespace")
    if c.check(os.path.exists(capture), "capture at the CLI's relative path on the host"):
        p, cap = mrtest.parse_capture(memray, capture)
        if c.equal(p.returncode, 0, "parse exit code") and cap is not None:
            sizes = {k: int(v) for k, v in
                     re.findall(r"(\w+)=(\d+)", next(l for l in t.output
                                                    if l.startswith("SIZES ")))}
            allocs = at.allocations(cap)
            for name, n in (("alpha", 3), ("temp", 3), ("main", 2), ("beta", 0)):
                c.equal(sum(1 for e in allocs if e["size"] == sizes[name]), n,
                        "allocations of the %s size" % name)
            leaked = sum(e["size"] for e in at.live_at_end(cap)
                         if e["size"] in sizes.values())
            c.equal(leaked, 3 * sizes["alpha"] + 2 * sizes["main"], "leaked bytes")
    c.equal(t.finish(), 0, "target exit code")
    c.finish()


if __name__ == "__main__":
    main()
