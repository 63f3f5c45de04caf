"""The bundled service for the attach demo in ./scripts/demo.sh: a long-running Python process
that memray attaches to while it runs.

Each "request" parses a payload and caches part of it in a module-level dict that is never
trimmed (a leak that grows with traffic); a "janitor" thread makes short-lived buffers. It prints
"ready" once serving and runs until it is killed.
"""
import sys
import threading
import time

KIB = 1024
_cache = {}


def parse_payload(n):
    # Larger than pymalloc's 512-byte limit, so each buffer is a system allocation.
    return [bytearray(4 * KIB) for _ in range(8)]


def remember(request_id, parts):
    _cache[request_id] = bytes(parts[0]) * 4  # 16 KiB kept per request: the leak


def handle_request(request_id):
    parts = parse_payload(request_id)
    remember(request_id, parts)


def janitor():
    while True:
        scratch = [bytearray(64 * KIB) for _ in range(4)]
        del scratch
        time.sleep(0.01)


def serve_forever():
    request_id = 0
    while True:
        handle_request(request_id)
        request_id += 1
        time.sleep(0.002)


def main():
    threading.Thread(target=janitor, name="janitor", daemon=True).start()
    print("ready", flush=True)
    serve_forever()


if __name__ == "__main__":
    sys.exit(main())
