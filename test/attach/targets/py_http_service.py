# A threaded HTTP service for test_attach_trace_python_allocators.py. Prints "ready PORT", then
# serves until "quit" on stdin.
#   GET /work?n=N     -> ",".join(str(i * i) for i in range(N)) (the client checks every byte)
#   GET /make?k=K     -> makes exactly K objects of BLOB bytes in make_exact, kept; "made K"
#   GET /allocators   -> the PyMem_GetAllocator tables of the RAW, MEM and OBJ domains (JSON)
#   GET /hold?s=S     -> sleeps S seconds in C *holding the GIL* (libc sleep through PyDLL)
import ctypes
import http.server
import json
import sys
import threading
import urllib.parse

# UNIT * BLOB asks PyObject_Malloc for 33 + BLOB bytes; UNIT is a variable so that the
# compiler cannot fold the product into a constant.
BLOB = 417
UNIT = b"\x05"
KEEP = []


class PyMemAllocatorEx(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")]


def allocators():
    get = ctypes.pythonapi.PyMem_GetAllocator  # PyDLL: called with the GIL held
    get.restype = None
    get.argtypes = [ctypes.c_int, ctypes.POINTER(PyMemAllocatorEx)]
    out = []
    for domain in (0, 1, 2):
        a = PyMemAllocatorEx()
        get(domain, ctypes.byref(a))
        out.append([a.ctx or 0, a.malloc or 0, a.calloc or 0, a.realloc or 0, a.free or 0])
    return out


def make_exact(k):
    for _ in range(k):
        KEEP.append(UNIT * BLOB)  # MARK: exact


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/work":
            n = int(query["n"][0])
            body = ",".join(str(i * i) for i in range(n))
        elif url.path == "/make":
            k = int(query["k"][0])
            make_exact(k)
            body = "made %d" % k
        elif url.path == "/allocators":
            body = json.dumps(allocators())
        elif url.path == "/hold":
            ctypes.PyDLL(None).sleep(int(query["s"][0]))
            body = "held"
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="server")
    thread.start()
    sys.stdout.write("ready %d\n" % server.server_address[1])
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    server.shutdown()
    thread.join()


main()
