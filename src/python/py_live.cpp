// memray._memray.LiveStream: the reading side of a live session (src/live/stream_source.hpp) for
// memray.SocketReader (python/memray/_reader.py). No terminal: it connects, decodes and folds on
// a thread of its own; Python asks for the header and for what is alive now.
#include "py_common.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <tuple>

#include "live/stream_source.hpp"
#include "report/symbolizer.hpp"

namespace memray::python {

namespace {

struct Live {
    std::unique_ptr<report::Symbolizer> symbolizer;
    std::unique_ptr<live::StreamSource> source;
};

struct PyLive {
    PyObject_HEAD
    Live* live;
};

PyTypeObject* g_live_type = nullptr;

Live& live_of(PyObject* self) { return *reinterpret_cast<PyLive*>(self)->live; }

void free_live_instance(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    auto free_fn = reinterpret_cast<freefunc>(PyType_GetSlot(type, Py_tp_free));
    free_fn(self);
    Py_DECREF(type);
}

PyObject* live_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"port", "connect_timeout_ms", nullptr};
    int port = 0;
    int timeout_ms = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|i", const_cast<char**>(keywords), &port,
                                     &timeout_ms))
        return nullptr;
    if (port <= 0 || port >= 65536) {
        PyErr_Format(PyExc_ValueError, "Invalid port: %d", port);
        return nullptr;
    }
    auto live = std::make_unique<Live>();
    try {
        live->symbolizer = std::make_unique<report::Symbolizer>();
        live::StreamOptions o;
        o.port = port;
        o.connect_timeout_ms = timeout_ms;
        o.symbolizer = live->symbolizer.get();
        live->source = std::make_unique<live::StreamSource>(std::move(o));
    } catch (...) {
        set_python_error();
        return nullptr;
    }
    auto alloc = reinterpret_cast<allocfunc>(PyType_GetSlot(type, Py_tp_alloc));
    PyObject* self = alloc(type, 0);
    if (self == nullptr) return nullptr;
    reinterpret_cast<PyLive*>(self)->live = live.release();
    return self;
}

void live_dealloc(PyObject* self) {
    Live* live = reinterpret_cast<PyLive*>(self)->live;
    if (live) {
        // Joining the reading thread may wait for a blocked read to notice the close.
        without_gil([&] { delete live; });
    }
    free_live_instance(self);
}

// poll(timeout_ms) -> (status, status_text, dropped_blocks): status 0 waiting, 1 running,
// 2 exited, 3 disconnected, 4 failed.
PyObject* live_poll(PyObject* self, PyObject* args) {
    int timeout_ms = 0;
    if (!PyArg_ParseTuple(args, "|i", &timeout_ms)) return nullptr;
    live::StreamSource& s = *live_of(self).source;
    try {
        without_gil([&] { s.poll(timeout_ms); });
    } catch (...) {
        set_python_error();
        return nullptr;
    }
    const live::Header& h = s.header();
    return Py_BuildValue("(iNK)", int(h.status), to_str(h.status_text),
                         (unsigned long long)h.dropped_blocks);
}

// header() -> dict, or None before the capture's header arrived.
PyObject* live_header(PyObject* self, PyObject*) {
    format::Header h;
    if (!live_of(self).source->capture_header(h)) Py_RETURN_NONE;
    return Py_BuildValue("{s:K,s:N,s:O,s:N,s:K}",                        //
                         "pid", (unsigned long long)h.pid,               //
                         "command_line", to_str(h.command_line),         //
                         "native", (h.flags & format::k_flag_native) ? Py_True : Py_False,
                         "python_version", to_str(h.python_version),     //
                         "start_time_ms", (unsigned long long)h.start_time_unix_ms);
}

PyObject* frames_list(const std::vector<report::Frame>& frames) {
    PyRef list(PyList_New(Py_ssize_t(frames.size())));
    if (!list) return nullptr;
    for (size_t i = 0; i < frames.size(); ++i) {
        PyObject* t = Py_BuildValue("(NNI)", to_str(frames[i].function), to_str(frames[i].file),
                                    unsigned(frames[i].line));
        if (t == nullptr) return nullptr;
        PyList_SetItem(list.get(), Py_ssize_t(i), t);
    }
    return list.release();
}

// snapshot(merge_threads) -> [(tid, node, bytes, count, python, native, hybrid, allocator,
// thread name)] of what is alive now, per location and allocator; the stacks are lists of
// (function, file, line), innermost first.
PyObject* live_snapshot(PyObject* self, PyObject* args) {
    int merge = 1;
    if (!PyArg_ParseTuple(args, "|p", &merge)) return nullptr;
    struct Item {
        uint64_t tid;
        uint32_t node;
        unsigned allocator;
        std::string thread_name;
        uint64_t bytes, count;
        std::vector<report::Frame> python, native, hybrid;
    };
    std::vector<Item> items;
    try {
        without_gil([&] {
            live_of(self).source->with_snapshot([&](const report::Snapshot& s,
                                                    const report::StackResolver& r,
                                                    const format::Reader& reader) {
                std::map<std::tuple<uint64_t, uint32_t, unsigned>, size_t> index;
                const auto& nodes = reader.nodes();
                for (const report::LocationAmount& l : s.locations) {
                    const report::SnapshotThread* thread =
                        !merge && l.thread < s.threads.size() ? &s.threads[l.thread] : nullptr;
                    uint64_t tid = thread ? thread->tid : 0;
                    unsigned allocator = unsigned(memray_allocator(unsigned(l.allocator)));
                    auto [it, fresh] = index.try_emplace({tid, l.node, allocator}, items.size());
                    if (!fresh) {
                        items[it->second].bytes += l.bytes;
                        items[it->second].count += l.count;
                        continue;
                    }
                    Item item{tid, l.node, allocator, thread ? thread->name : std::string(),
                              l.bytes, l.count, {}, {}, {}};
                    item.hybrid = r.stack(l.node);
                    for (const report::Frame& f : item.hybrid)
                        if (!f.native) item.python.push_back(f);
                    for (uint32_t n = l.node, steps = 0; n != 0 && n < nodes.size() && steps < nodes.size();
                         ++steps, n = nodes[n].parent)
                        if (nodes[n].kind == format::FrameKind::Native) item.native.push_back(r.frame(n));
                    items.push_back(std::move(item));
                }
            });
        });
    } catch (...) {
        set_python_error();
        return nullptr;
    }
    PyRef list(PyList_New(0));
    if (!list) return nullptr;
    for (const Item& i : items) {
        PyObject* py = frames_list(i.python);
        PyObject* native = py ? frames_list(i.native) : nullptr;
        PyObject* hybrid = native ? frames_list(i.hybrid) : nullptr;
        if (!hybrid) {
            Py_XDECREF(py);
            Py_XDECREF(native);
            return nullptr;
        }
        PyRef t(Py_BuildValue("(KIKKNNNIs)", (unsigned long long)i.tid, unsigned(i.node),
                              (unsigned long long)i.bytes, (unsigned long long)i.count, py, native,
                              hybrid, i.allocator, i.thread_name.c_str()));
        if (!t || PyList_Append(list.get(), t.get()) != 0) return nullptr;
    }
    return list.release();
}

PyObject* live_close(PyObject* self, PyObject*) {
    try {
        without_gil([&] { live_of(self).source->close(); });
    } catch (...) {
        set_python_error();
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyMethodDef k_live_methods[] = {
    {"poll", live_poll, METH_VARARGS,
     "poll(timeout_ms=0) -> (status, status_text, dropped_blocks), waiting at most timeout_ms "
     "for news"},
    {"header", live_header, METH_NOARGS, "The capture's header, or None before it arrived."},
    {"snapshot", live_snapshot, METH_VARARGS,
     "snapshot(merge_threads=True) -> [(tid, node, bytes, count, python, native, hybrid, "
     "allocator, thread_name)]"},
    {"close", live_close, METH_NOARGS, "Ends the connection (idempotent)."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot k_live_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(live_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(live_dealloc)},
    {Py_tp_methods, k_live_methods},
    {Py_tp_doc, const_cast<char*>("LiveStream(port, connect_timeout_ms=0): a live session's "
                                  "stream, read on a thread of its own.")},
    {0, nullptr},
};

PyType_Spec k_live_spec = {"memray._memray.LiveStream", sizeof(PyLive), 0, Py_TPFLAGS_DEFAULT,
                           k_live_slots};

}  // namespace

bool add_live_type(PyObject* module) {
    g_live_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&k_live_spec));
    if (g_live_type == nullptr) return false;
    Py_INCREF(g_live_type);
    if (PyModule_AddObject(module, "LiveStream", reinterpret_cast<PyObject*>(g_live_type)) != 0) {
        Py_DECREF(g_live_type);
        return false;
    }
    return true;
}

}  // namespace memray::python
