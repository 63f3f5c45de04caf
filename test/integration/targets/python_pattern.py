# Known allocation pattern: keep_buffers() makes 7 buffers of 1 MiB (bytearray(n) asks the
# interpreter's allocator for n + 1 bytes, which is above pymalloc's limit and so reaches malloc),
# frees 3, and returns 4 that stay alive past the peak. The test driver finds the lines by the
# "# MARK:" comments below, so edit freely but keep the markers on the right lines.
import sys

BUFFER_SIZE = 1024 * 1024
KEPT = []


def keep_buffers():
    buffers = []
    for _ in range(7):
        buffers.append(bytearray(BUFFER_SIZE))  # MARK: alloc
    for _ in range(3):
        buffers.pop()
    return buffers


def make_report():
    return keep_buffers()  # MARK: call


KEPT.extend(make_report())  # MARK: module
sys.stdout.write("kept %d buffers of %d bytes\n" % (len(KEPT), BUFFER_SIZE))
