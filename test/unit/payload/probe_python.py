# Run under LD_PRELOAD=libgp_probe.so by probe_python.sh: checks that allocations made by the
# interpreter (libpython or the executable) and by extension modules loaded later reach the hooks.
import ctypes
import sys

probe = ctypes.CDLL(None)
for name in ("gp_probe_slots_at_start", "gp_probe_slots_now", "gp_probe_count", "gp_probe_uninstall"):
    getattr(probe, name).restype = ctypes.c_uint
probe.gp_probe_count.argtypes = [ctypes.c_size_t, ctypes.c_size_t]



def shared_objects():
    with open("/proc/self/maps") as f:
        return {line.split()[-1] for line in f if ".so" in line}


start = probe.gp_probe_slots_at_start()
objects_before = shared_objects()
import array, decimal, json, select, socket, zlib  # noqa: E401 (some are extension modules, dlopen'ed now)
loaded = len(shared_objects() - objects_before)
after_imports = probe.gp_probe_slots_now()

probe.gp_probe_reset()
buffers = [bytearray(200003) for _ in range(10)]
seen = probe.gp_probe_count(200003, 64)
left = probe.gp_probe_uninstall()
more = [bytearray(300001) for _ in range(3)]  # still works with the slots restored
print(f"{sys.version.split()[0]} {sys.executable}: slots at start {start}, after importing {loaded} "
      f"libraries {after_imports}, "
      f"10 x bytearray(200003) seen {seen}, slots after uninstall {left}")
ok = start > 0 and (after_imports > start or loaded == 0) and seen >= 10 and left == 0
sys.exit(0 if ok else 1)
