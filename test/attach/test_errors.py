"""Every attach/detach error case: one line `memray: error: ...` with the right substance, a
non-zero exit, and the target still running (and answering) afterwards.

usage: test_errors.py MEMRAY NATIVE_SERVICE SEIZE_HELPER SLEEPER_C SLEEPER32_S CASE
One case per run (meson defines one test per case), so a case this machine cannot run reports
SKIP (exit 77, with the reason) instead of hiding inside a passing test.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import attachtest as at
import mrtest

DETACH_BOUND = 20  # seconds; detach used to wait 30 s on a stopped process

c = None
memray = None
work = None


def check_error(p, pattern, what):
    c.check(p.returncode not in (0,) and not mrtest.crashed(p),
            "%s: fails cleanly (exit %d)" % (what, p.returncode))
    c.check(mrtest.one_error_line(p), "%s: exactly one line 'memray: error: ...'" % what)
    c.check(re.search(pattern, p.stderr, re.I) is not None,
            "%s: message matches /%s/" % (what, pattern))


def service(exe):
    t = at.Target([exe])
    if t.expect(r"^ready ") is None:
        c.check(False, "service target started")
        t.kill()
        return None
    return t


def answers(t, what):
    c.check(t.running() and t.request("ping", r"^pong", 10) is not None,
            "%s: target still running and answering" % what)


def case_no_such_process():
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid = dead.pid
    if os.path.exists("/proc/%d" % pid):
        pid = 4194303  # pid_max's ceiling on 64-bit Linux: never a live process here
    out = os.path.join(work, "nopid.bin")
    p = at.attach(memray, pid, out)
    check_error(p, r"no such process|no process|does not exist|not found", "nonexistent pid")
    c.check(str(pid) in p.stderr, "nonexistent pid: the message names the pid")
    c.check(not os.path.exists(out), "nonexistent pid: no capture file left behind")
    p = at.detach(memray, pid)
    check_error(p, r"no such process|no process|does not exist|not found",
                "detach of a nonexistent pid")


def case_not_permitted(exe):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        mrtest.skip("needs root and setpriv to run the CLI as nobody")
    t = service(exe)
    if t is None:
        return
    outdir = os.path.join(work, "nobody")
    os.mkdir(outdir)
    os.chmod(outdir, 0o777)
    os.chmod(work, 0o755)
    out = os.path.join(outdir, "denied.bin")
    p = mrtest.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", memray,
                    "attach", "-o", out, str(t.pid)], timeout=60)
    check_error(p, r"permi|not allowed|CAP_SYS_PTRACE|ptrace_scope", "not permitted")
    c.check(re.search(r"root|CAP_SYS_PTRACE|ptrace_scope", p.stderr) is not None,
            "not permitted: says how to get permission (root/CAP_SYS_PTRACE/ptrace_scope)")
    c.check(not os.path.exists(out), "not permitted: no capture file left behind")
    answers(t, "not permitted")
    t.finish()


def case_already_traced(exe, helper):
    t = service(exe)
    if t is None:
        return
    h = at.Target([helper, t.pid])
    if not c.check(h.expect(r"^seized", 10) is not None, "helper seized the target"):
        h.kill()
        t.kill()
        return
    out = os.path.join(work, "traced.bin")
    p = mrtest.run([memray, "attach", "-o", out, str(t.pid)], timeout=60)
    check_error(p, r"traced|debugger|tracer", "already traced")
    c.check(str(h.pid) in p.stderr, "already traced: the message names the tracer's pid")
    c.check(not os.path.exists(out), "already traced: no capture file left behind")
    c.check(at.proc_status(t.pid).get("TracerPid", "").strip() == str(h.pid),
            "already traced: the other debugger still holds the target")
    h.finish(quit_command="", timeout=10)
    at.wait_untraced(t.pid)
    answers(t, "already traced")
    t.finish()


def build(cmd, what):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        print("  %s: %s" % (what, p.stdout.decode(errors="replace").strip()[-300:]))
    return p.returncode == 0


def started(binary):
    """Starts binary and waits until the exec has happened (its /proc entry shows the binary)."""
    proc = subprocess.Popen([binary])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if os.path.samefile("/proc/%d/exe" % proc.pid, binary):
                return proc
        except OSError:
            pass
        time.sleep(0.005)
    return proc


def case_refused_binary(binary, pattern, what):
    proc = started(binary)
    out = os.path.join(work, what.replace(" ", "-") + ".bin")
    p = at.attach(memray, proc.pid, out)
    check_error(p, pattern, what)
    c.check(str(proc.pid) in p.stderr or "32" in p.stderr or "static" in p.stderr.lower(),
            "%s: message says which process or why" % what)
    c.check(not os.path.exists(out), "%s: no capture file left behind" % what)
    c.check(at.process_running(proc.pid), "%s: target still running" % what)
    proc.kill()
    proc.wait()


def case_static(sleeper_c):
    exe = os.path.join(work, "sleeper-static")
    if not build(["gcc", "-static", "-O1", "-o", exe, sleeper_c], "gcc -static"):
        mrtest.skip("gcc -static failed (no static libc?)")
    case_refused_binary(exe, r"static|glibc|dlopen|libc", "static binary")


def case_32bit(sleeper_c, sleeper32_s):
    exe = os.path.join(work, "sleeper32")
    obj = exe + ".o"
    if not build(["gcc", "-m32", "-o", exe, sleeper_c], "gcc -m32"):
        if not (build(["as", "--32", "-o", obj, sleeper32_s], "as --32") and
                build(["ld", "-m", "elf_i386", "-o", exe, obj], "ld -m elf_i386")):
            mrtest.skip("neither gcc -m32 nor as --32/ld -m elf_i386 work")
    # A kernel without IA32 emulation (or a container that forbids it) refuses the exec itself.
    try:
        probe = started(exe)
    except OSError as e:
        mrtest.skip("this kernel cannot run 32-bit programs (%s)" % e.strerror)
    alive = probe.poll() is None
    probe.kill()
    probe.wait()
    if not alive:
        mrtest.skip("the 32-bit sleeper exited at once (exit %s)" % probe.returncode)
    case_refused_binary(exe, r"32", "32-bit")


def kill_when_traced(t, sig, seen):
    """Sends sig to the target as soon as a tracer shows up in its status."""
    path = "/proc/%d/status" % t.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            return
        m = re.search(r"TracerPid:\s*(\d+)", text)
        if m and m.group(1) != "0":
            os.kill(t.pid, sig)
            seen.append(time.monotonic())
            return


def case_exits_during_attach(exe):
    # SIGKILL while the CLI holds the target: it must notice, say so in one line, and not hang.
    hit = False
    for attempt in range(5):
        t = service(exe)
        if t is None:
            return
        waiter = threading.Thread(target=t.proc.wait, daemon=True)  # reap at once, like init
        waiter.start()
        seen = []
        killer = threading.Thread(target=kill_when_traced, args=(t, 9, seen), daemon=True)
        killer.start()
        out = os.path.join(work, "exiting%d.bin" % attempt)
        p = mrtest.run([memray, "attach", "-o", out, str(t.pid)], timeout=60)
        killer.join(5)
        waiter.join(10)
        t.kill()
        if p.returncode == 0:
            print("  attempt %d: attach completed before the kill landed; retrying" % attempt)
            continue
        hit = True
        # Says what happened, not just the errno of whichever ptrace call noticed it.
        check_error(p, r"exit|gone|died|terminated|killed|vanished",
                    "process exits during attach")
        c.check(not mrtest.crashed(p), "process exits during attach: the CLI did not crash")
        break
    if not hit:
        # Not a skip of the whole case: the SIGTERM half below still runs.
        print("note: attach always finished before the SIGKILL landed (5 tries)")

    # SIGTERM arriving while the CLI holds the target must be delivered, not dropped: the
    # target dies of it, whether attach reports success or an error.
    t = service(exe)
    if t is None:
        return
    seen = []
    killer = threading.Thread(target=kill_when_traced, args=(t, 15, seen), daemon=True)
    killer.start()
    p = mrtest.run([memray, "attach", "-o", os.path.join(work, "term.bin"), str(t.pid)],
                   timeout=60)
    killer.join(5)
    if p.returncode != 0:
        c.check(mrtest.one_error_line(p), "SIGTERM during attach: one error line")
    c.check(not mrtest.crashed(p), "SIGTERM during attach: the CLI did not crash")
    try:
        code = t.proc.wait(15)
    except subprocess.TimeoutExpired:
        code = None
    c.check(bool(seen), "SIGTERM was sent while the target was traced")
    c.equal(code, -15, "SIGTERM sent during attach was delivered (target died of it)")
    t.kill()


def case_detach_nothing(exe):
    t = service(exe)
    if t is None:
        return
    p = at.detach(memray, t.pid)
    c.equal(p.returncode, 1, "detach with nothing attached: exit code")
    c.check(mrtest.one_error_line(p), "detach with nothing attached: one error line")
    c.check("no previous memray attach call detected" in p.stderr,
            "detach with nothing attached: memray's message")
    answers(t, "detach with nothing attached")
    t.finish()


def wait_state(pid, states, timeout=10.0):
    """Waits until the first letter of /proc/PID/stat's state is in `states`; True if it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = at.proc_status(pid)
        if st is None:
            return False
        if st.get("State", "?").split()[0] in states:
            return True
        time.sleep(0.005)
    return False


def detach_bounded(pid, what):
    """memray detach, bounded well below the 30 s it used to wait on a stopped process."""
    try:
        return mrtest.run([memray, "detach", str(pid)], timeout=DETACH_BOUND)
    except subprocess.TimeoutExpired:
        c.check(False, "%s: detach answered within %d s instead of waiting" % (what, DETACH_BOUND))
        return None


def finalized(capture, timeout=30.0):
    """Waits until the capture holds its trailer (written last, when tracking ends); True if
    it does in time."""
    deadline = time.monotonic() + timeout
    while True:
        p, cap = mrtest.parse_capture(memray, capture)
        if cap is not None and cap.trailer is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def case_detach_stopped(exe):
    """detach of a process stopped with SIGSTOP: says so at once, leaves tracking on, and works
    once the process runs again."""
    t = service(exe)
    if t is None:
        return
    capture = os.path.join(work, "stopped.bin")
    p = at.attach(memray, t.pid, capture)
    if not at.check_attached(c, p, "detach of a stopped process: attach"):
        t.kill()
        return
    os.kill(t.pid, signal.SIGSTOP)
    c.check(wait_state(t.pid, "T"), "the target is stopped (state T)")
    p = detach_bounded(t.pid, "detach of a stopped process")
    if p is not None:
        check_error(p, r"stopped", "detach of a stopped process")
        c.check("kill -CONT %d" % t.pid in p.stderr,
                "detach of a stopped process: says how to resume it (kill -CONT %d)" % t.pid)
    c.check(wait_state(t.pid, "T", 1), "detach left the target stopped as it was")
    os.kill(t.pid, signal.SIGCONT)
    c.check(wait_state(t.pid, "RSD"), "the target runs again after SIGCONT")
    c.check(t.request("m 1", r"^done m 1") is not None, "allocation after SIGCONT")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, capture, "detach after SIGCONT")
    p, data = mrtest.stats_json(memray, capture, work)
    c.check(p.returncode == 0 and data is not None and data.get("total_num_allocations", 0) > 0,
            "detach after SIGCONT: the capture is readable and holds the allocations")
    answers(t, "detach of a stopped process")
    t.finish()


def control_thread(pid):
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() == "memray-control":
                    return int(tid)
        except OSError:
            pass
    return None


def case_detach_left_in_place(exe, helper):
    """The payload's control thread stops (a debugger holds it) after the stop request was
    written: detach says the request stays, and the capture is finalized once it runs again."""
    t = service(exe)
    if t is None:
        return
    capture = os.path.join(work, "left.bin")
    p = at.attach(memray, t.pid, capture)
    if not at.check_attached(c, p, "request left in place: attach"):
        t.kill()
        return
    tid = control_thread(t.pid)
    if not c.check(tid is not None, "the payload's control thread is found (memray-control)"):
        t.kill()
        return
    h = at.Target([helper, tid, "stop"])
    if not c.check(h.expect(r"^seized", 10) is not None, "helper stopped the control thread"):
        h.kill()
        t.kill()
        return
    p = detach_bounded(t.pid, "request left in place")
    if p is not None:
        check_error(p, r"left in place", "request left in place")
        c.check(re.search(r"control thread %d" % tid, p.stderr) is not None,
                "request left in place: names the stopped control thread")
        c.check(re.search(r"written when it resumes", p.stderr) is not None,
                "request left in place: says the capture is written when it resumes")
    c.check(not finalized(capture, 0.5), "the capture is not final while the thread is held")
    h.finish(quit_command="", timeout=10)
    c.check(finalized(capture), "the capture is finalized once the control thread runs again")
    p = at.detach(memray, t.pid)
    c.check("no previous memray attach call detected" in p.stderr,
            "request left in place: tracking has ended (a second detach finds nothing)")
    answers(t, "request left in place")
    t.finish()


def case_detach_not_permitted(exe):
    """A non-root detach of root's process: attach's 'not permitted' wording and way out."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        mrtest.skip("needs root and setpriv to run the CLI as nobody")
    t = service(exe)
    if t is None:
        return
    capture = os.path.join(work, "rootonly.bin")
    p = at.attach(memray, t.pid, capture)
    if not at.check_attached(c, p, "detach not permitted: attach as root"):
        t.kill()
        return
    os.chmod(work, 0o755)
    p = mrtest.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", memray,
                    "detach", str(t.pid)], timeout=60)
    check_error(p, r"not permitted to detach from process %d" % t.pid, "detach not permitted")
    c.check(re.search(r"uid 0", p.stderr) is not None,
            "detach not permitted: names the owner (uid 0)")
    c.check(re.search(r"root|CAP_SYS_PTRACE|ptrace_scope", p.stderr) is not None,
            "detach not permitted: says how to get permission (root/CAP_SYS_PTRACE/ptrace_scope)")
    answers(t, "detach not permitted")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, capture, "detach as root afterwards")
    t.finish()


def case_attach_twice(exe):
    t = service(exe)
    if t is None:
        return
    first = os.path.join(work, "twice-a.bin")
    second = os.path.join(work, "twice-b.bin")
    p = at.attach(memray, t.pid, first)
    if not at.check_attached(c, p, "attach twice: first attach"):
        t.kill()
        return
    p = at.attach(memray, t.pid, second)
    check_error(p, r"already", "attach while attached")
    c.check(not os.path.exists(second), "attach while attached: second file not created")
    answers(t, "attach while attached")
    c.check(t.request("m 2", r"^done m 2") is not None, "allocations after the refused attach")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, first, "attach twice: detach")
    p, cap = mrtest.parse_capture(memray, first)
    if c.equal(p.returncode, 0, "attach twice: first capture readable") and cap is not None:
        sizes_line = next(l for l in t.output if l.startswith("SIZES"))
        sizes = dict(re.findall(r"(\w+)=(\d+)", sizes_line))
        c.equal(sum(1 for e in at.allocations(cap) if e["size"] == int(sizes["main"])), 2,
                "attach twice: the first session kept recording")
    t.finish()


def case_output_exists(exe):
    t = service(exe)
    if t is None:
        return
    out = os.path.join(work, "exists.bin")
    with open(out, "w") as f:
        f.write("precious\n")
    p = at.attach(memray, t.pid, out)
    check_error(p, r"exist|-f|force", "output exists without -f")
    with open(out) as f:
        c.equal(f.read(), "precious\n", "output exists without -f: file untouched")
    answers(t, "output exists without -f")
    p = at.detach(memray, t.pid)
    c.equal(p.returncode, 1, "output exists without -f: nothing was attached")
    p = at.attach(memray, t.pid, out, extra=["-f"])
    at.check_attached(c, p, "attach -f over an existing file")
    c.check(t.request("m 1", r"^done m 1") is not None, "allocation while attached with -f")
    p = at.detach(memray, t.pid)
    at.check_detached(c, p, out, "detach after -f")
    p, data = mrtest.stats_json(memray, out, work)
    c.equal(p.returncode, 0, "the -f capture replaced the file and is readable")
    t.finish()


def main():
    global c, memray, work
    memray, exe, helper, sleeper_c, sleeper32_s, name = sys.argv[1:7]
    cases = {
        "no-such-process": case_no_such_process,
        "not-permitted": lambda: case_not_permitted(exe),
        "already-traced": lambda: case_already_traced(exe, helper),
        "static": lambda: case_static(sleeper_c),
        "32bit": lambda: case_32bit(sleeper_c, sleeper32_s),
        "exits-during-attach": lambda: case_exits_during_attach(exe),
        "detach-nothing": lambda: case_detach_nothing(exe),
        "attach-twice": lambda: case_attach_twice(exe),
        "output-exists": lambda: case_output_exists(exe),
        "detach-stopped": lambda: case_detach_stopped(exe),
        "detach-left-in-place": lambda: case_detach_left_in_place(exe, helper),
        "detach-not-permitted": lambda: case_detach_not_permitted(exe),
    }
    if name not in cases:
        sys.exit("unknown case %r (known: %s)" % (name, ", ".join(cases)))
    at.require_attach(memray)
    c = mrtest.Checker("attach-errors-" + name)
    work = mrtest.scratch_dir("at-err")
    cases[name]()
    c.finish()


if __name__ == "__main__":
    main()
