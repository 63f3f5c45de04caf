# Ends with os._exit(3) right after distinctive allocations, as forked workers do: no atexit
# handlers, no interpreter shutdown. bytearray(n) asks the interpreter's allocator for n + 1
# bytes, above pymalloc's limit, so each is one malloc. Announces the sizes first (flushed).
import os
import sys

SIZES = [3456781, 3466791, 3476803]  # further apart than the slack the driver allows
sys.stdout.write("".join("SIZE %d\n" % n for n in SIZES))
sys.stdout.flush()
kept = [bytearray(n) for n in SIZES]
os._exit(3)
