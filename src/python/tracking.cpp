// The Tracker's side of the extension: the payload (libmemray-payload.so) loaded into this
// interpreter and started through its C API with the settings text of format/settings.hpp, the
// same way `memray run` starts it. One payload per process: a payload that is already loaded
// (by `memray run`, `memray attach` or an earlier Tracker) is reused, never loaded twice, so its
// state says whether a session is running.
#include <dlfcn.h>
#include <link.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "format/settings.hpp"
#include "payload/api.hpp"
#include "python/py_common.hpp"

namespace memray::python {

namespace {

constexpr const char* k_payload_name = "libmemray-payload.so";

struct PayloadApi {
    int (*start)(const char*) = nullptr;
    int (*stop)() = nullptr;
    int (*active)() = nullptr;
    const char* (*last_error)() = nullptr;
    void (*name_thread)(const char*) = nullptr;
    const memray_payload_status_t* status = nullptr;
};

PayloadApi g_api;
bool g_loaded = false;

// Path of an already loaded payload ("" when none), whoever loaded it.
std::string loaded_payload() {
    std::string found;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) -> int {
            const char* name = info->dlpi_name;
            if (name == nullptr) return 0;
            const char* base = std::strrchr(name, '/');
            base = base ? base + 1 : name;
            if (std::strcmp(base, k_payload_name) != 0) return 0;
            *static_cast<std::string*>(data) = name;
            return 1;
        },
        &found);
    return found;
}

template <typename T>
bool bind(void* handle, const char* name, T& out) {
    out = reinterpret_cast<T>(dlsym(handle, name));
    return out != nullptr;
}

// Loads (or finds) the payload; false with a Python exception set on failure.
bool load_payload(const std::string& path) {
    if (g_loaded) return true;
    std::string already = loaded_payload();
    void* handle = already.empty() ? dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)
                                   : dlopen(already.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (handle == nullptr) {
        const char* why = dlerror();
        PyErr_Format(PyExc_OSError,
                     "cannot load the memray payload %s: %s (set MEMRAY_PAYLOAD to its path)",
                     already.empty() ? path.c_str() : already.c_str(), why ? why : "unknown error");
        return false;
    }
    PayloadApi api;
    // The exclusive start: -EBUSY when a session already runs, decided under the payload's start
    // lock, so two Trackers (or a Tracker and an attach) starting at once cannot both win.
    if (!bind(handle, "memray_payload_start_exclusive", api.start) ||
        !bind(handle, "memray_payload_stop", api.stop) ||
        !bind(handle, "memray_payload_active", api.active) ||
        !bind(handle, "memray_payload_last_error", api.last_error) ||
        !bind(handle, "memray_payload_name_thread", api.name_thread) ||
        !bind(handle, "memray_payload_status", api.status)) {
        PyErr_Format(PyExc_OSError, "%s is not a memray payload of this version (missing symbols)",
                     path.c_str());
        return false;
    }
    // The payload is linked -z nodelete: the handle is never closed.
    g_api = api;
    g_loaded = true;
    return true;
}

// "" when no session runs, else what runs (for the error message).
const char* busy_reason() {
    if (g_api.active()) return "tracking is already active in this process";
    uint32_t state = __atomic_load_n(&g_api.status->state, __ATOMIC_ACQUIRE);
    if (memray_payload_state_busy(state))
        return "a `memray attach` session is running in this process";
    return "";
}

PyObject* tracking_start(PyObject*, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"payload", "output", "command", "native", "compress", "force",
                                     "log_level", "follow_fork", "trace_python_allocators",
                                     "aggregate", nullptr};
    const char* payload = nullptr;
    PyObject* output_obj = nullptr;
    const char* command = "";
    int native = 0, compress = 1, force = 0, log_level = format::PayloadSettings::k_default_log_level;
    int follow_fork = 0;
    int trace_python_allocators = 0;
    int aggregate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO&s|pppippp", const_cast<char**>(keywords),
                                     &payload, PyUnicode_FSConverter, &output_obj, &command,
                                     &native, &compress, &force, &log_level, &follow_fork,
                                     &trace_python_allocators, &aggregate))
        return nullptr;
    PyRef output(output_obj);
    if (!load_payload(payload)) return nullptr;
    if (*busy_reason() != '\0') {
        PyErr_Format(PyExc_RuntimeError,
                     "No more than one Tracker instance can be active at the same time (%s)",
                     busy_reason());
        return nullptr;
    }
    std::string text;
    try {
        format::PayloadSettings s;
        format::set_setting(s.output, PyBytes_AsString(output.get()));
        format::set_setting(s.command, command);
        s.native = native != 0;
        s.compress = compress != 0;
        s.force = force != 0;
        s.log_level = log_level;
        s.follow_fork = follow_fork != 0;
        s.trace_python_allocators = trace_python_allocators != 0;
        s.aggregate = aggregate != 0;
        text = format::settings_text(s);
    } catch (const std::exception& e) {
        PyErr_Format(PyExc_ValueError, "invalid tracker settings: %s", e.what());
        return nullptr;
    }
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = g_api.start(text.c_str());
    Py_END_ALLOW_THREADS
    if (rc == -EBUSY) {
        PyErr_Format(PyExc_RuntimeError,
                     "No more than one Tracker instance can be active at the same time (%s)",
                     *busy_reason() ? busy_reason() : "another session started meanwhile");
        return nullptr;
    }
    if (rc != 0) {
        const char* why = g_api.last_error();
        PyObject* err = Py_BuildValue("(is)", -rc, why && *why ? why : std::strerror(-rc));
        if (err != nullptr) {
            PyErr_SetObject(PyExc_OSError, err);
            Py_DECREF(err);
        }
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* tracking_stop(PyObject*, PyObject*) {
    if (!g_loaded) Py_RETURN_NONE;
    Py_BEGIN_ALLOW_THREADS
    g_api.stop();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject* tracking_active(PyObject*, PyObject*) {
    return PyBool_FromLong(g_loaded && g_api.active());
}

// Stored to, so that the compiler keeps the marker's malloc/free pair.
void* volatile g_marker_block = nullptr;

// The Tracker's root marker (python/capture.hpp): one zero-byte allocation made through this
// module's patched GOT, so its stack is the calling Python frames, and it never moves the heap.
PyObject* tracking_mark_root(PyObject*, PyObject*) {
    g_marker_block = std::malloc(0);
    std::free(g_marker_block);
    g_marker_block = nullptr;
    Py_RETURN_NONE;
}

PyObject* tracking_name_thread(PyObject*, PyObject* args) {
    const char* name = nullptr;
    if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
    if (g_loaded) g_api.name_thread(name);
    Py_RETURN_NONE;
}

}  // namespace

PyMethodDef k_payload_methods[] = {
    {"tracking_start", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(tracking_start)),
     METH_VARARGS | METH_KEYWORDS,
     "tracking_start(payload, output, command, native, compress, force, log_level, follow_fork, "
     "trace_python_allocators, aggregate): load the "
     "payload (or use the one loaded) and start tracking this process."},
    {"tracking_stop", tracking_stop, METH_NOARGS, "Stop tracking and finalize the capture."},
    {"tracking_active", tracking_active, METH_NOARGS, "True while the payload tracks."},
    {"tracking_mark_root", tracking_mark_root, METH_NOARGS,
     "One zero-byte allocation from the caller's stack (the Tracker's root marker)."},
    {"tracking_name_thread", tracking_name_thread, METH_VARARGS,
     "tracking_name_thread(name): the calling thread's name in the capture."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace memray::python
