// _memray.CaptureFile (one opened capture: header, views, stacks) and _memray.EventIterator
// (every event, streamed from a reader of its own). memray/_reader.py builds FileReader,
// AllocationRecord and friends on top of them.
#include <map>
#include <memory>
#include <new>
#include <tuple>
#include <utility>

#include "python/capture.hpp"
#include "python/py_common.hpp"
#include "report/stats.hpp"

namespace memray::python {

namespace {

// format::Allocator -> memray's AllocatorType value (memray numbers them differently).
constexpr long k_memray_allocator[format::k_allocator_max + 1] = {
    0,   // (none)
    6,   // Malloc -> MALLOC
    5,   // Free -> FREE
    8,   // Calloc -> CALLOC
    7,   // Realloc -> REALLOC
    9,   // PosixMemalign -> POSIX_MEMALIGN
    10,  // AlignedAlloc -> ALIGNED_ALLOC
    11,  // Memalign -> MEMALIGN
    12,  // Valloc -> VALLOC
    13,  // Pvalloc -> PVALLOC
    14,  // Mmap -> MMAP
    15,  // Munmap -> MUNMAP
    2,   // PymallocMalloc -> PYMALLOC_MALLOC
    3,   // PymallocCalloc -> PYMALLOC_CALLOC
    4,   // PymallocRealloc -> PYMALLOC_REALLOC
    1,   // PymallocFree -> PYMALLOC_FREE
};

long memray_allocator(format::Allocator a) {
    return memray::python::memray_allocator(unsigned(a));
}

struct PyCapture {
    PyObject_HEAD
    Capture* capture;
};

struct PyEventIterator {
    PyObject_HEAD
    PyObject* owner;  // the PyCapture, kept alive for the records' stacks
    format::Reader* reader;
};

PyTypeObject* g_capture_type = nullptr;
PyTypeObject* g_event_iterator_type = nullptr;

Capture& capture_of(PyObject* self) { return *reinterpret_cast<PyCapture*>(self)->capture; }

void free_instance(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    auto free_fn = reinterpret_cast<freefunc>(PyType_GetSlot(type, Py_tp_free));
    free_fn(self);
    Py_DECREF(type);  // heap-type instances own a reference to their type
}

// --- CaptureFile

PyObject* capture_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"path", "max_memory_records", "report_progress", nullptr};
    PyObject* path_obj = nullptr;
    Py_ssize_t max_records = 10000;
    int progress = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|np", const_cast<char**>(keywords),
                                     PyUnicode_FSConverter, &path_obj, &max_records, &progress))
        return nullptr;
    PyRef path_bytes(path_obj);
    if (max_records <= 0) {
        PyErr_SetString(PyExc_ValueError, "max_memory_records must be positive");
        return nullptr;
    }
    std::string path(PyBytes_AsString(path_bytes.get()));
    Capture* capture = nullptr;
    try {
        without_gil([&] { capture = new Capture(path, size_t(max_records), progress != 0); });
    } catch (...) {
        set_python_error();
        return nullptr;
    }
    auto alloc = reinterpret_cast<allocfunc>(PyType_GetSlot(type, Py_tp_alloc));
    PyObject* self = alloc(type, 0);
    if (self == nullptr) {
        delete capture;
        return nullptr;
    }
    reinterpret_cast<PyCapture*>(self)->capture = capture;
    return self;
}

void capture_dealloc(PyObject* self) {
    delete reinterpret_cast<PyCapture*>(self)->capture;
    free_instance(self);
}

PyObject* capture_header(PyObject* self, PyObject*) {
    try {
        const Capture& c = capture_of(self);
        const format::Reader& r = c.reader();
        const format::Header& h = r.header();
        // The main thread is the one whose tid is the pid (the first one seen need not be).
        uint64_t main_tid = r.threads().size() > 1 ? r.threads()[1].tid : 0;
        for (const auto& t : r.threads())
            if (t.tid == h.pid) main_tid = t.tid;
        return Py_BuildValue(
            "{s:I,s:K,s:K,s:K,s:N,s:N,s:N,s:K,s:K,s:K,s:K,s:O,s:O,s:O,s:O,s:N,s:N}",  //
            "version", unsigned(h.version),                                     //
            "pid", (unsigned long long)h.pid,                                   //
            "start_time_ms", (unsigned long long)h.start_time_unix_ms,          //
            "end_time_ms", (unsigned long long)(h.start_time_unix_ms + c.end_time_us() / 1000),
            "command_line", to_str(h.command_line),                             //
            "python_version", to_str(h.python_version),                         //
            "executable", to_str(h.executable),                                 //
            "total_records", (unsigned long long)c.total_records(),             //
            "total_frames", (unsigned long long)(r.nodes().empty() ? 0 : r.nodes().size() - 1),
            "peak_memory", (unsigned long long)c.high_water_mark().peak_bytes,  //
            "main_tid", (unsigned long long)main_tid,                           //
            "native", (h.flags & format::k_flag_native) ? Py_True : Py_False,
            "python_allocators", (h.flags & format::k_flag_python_allocators) ? Py_True : Py_False,
            "aggregated", (h.flags & format::k_flag_aggregated) ? Py_True : Py_False,
            "truncated", r.truncated() ? Py_True : Py_False,                    //
            "truncation_reason", to_str(r.truncation_reason()),                //
            "python_allocator", to_str(report::python_allocator_label(h.python_allocator)));
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

PyObject* capture_memory_snapshots(PyObject* self, PyObject*) {
    const Capture& c = capture_of(self);
    uint64_t start_ms = c.reader().header().start_time_unix_ms;
    const auto& memory = c.high_water_mark().memory;
    PyRef list(PyList_New(0));
    if (!list) return nullptr;
    // A capture without samples has one zero point (Snapshot::memory is never empty): none here.
    if (memory.size() == 1 && memory[0].time_us == 0 && memory[0].rss == 0) return list.release();
    for (const report::MemoryPoint& p : memory) {
        PyRef t(Py_BuildValue("(KKK)", (unsigned long long)(start_ms + p.time_us / 1000),
                              (unsigned long long)p.rss, (unsigned long long)p.heap));
        if (!t || PyList_Append(list.get(), t.get()) != 0) return nullptr;
    }
    return list.release();
}

// A view's locations as AllocationRecords, merged over threads (tid 0) when asked.
PyObject* location_list(PyObject* self, const report::Snapshot& s, bool merge_threads) {
    const Capture& c = capture_of(self);
    PyRef list(PyList_New(0));
    if (!list) return nullptr;
    auto append = [&](PyObject* t) {
        PyRef item(t);
        return item && PyList_Append(list.get(), item.get()) == 0;
    };
    if (!merge_threads) {
        for (const report::LocationAmount& l : s.locations) {
            if (!append(make_record(self, c.tid_of(l.thread), 0, l.bytes,
                                    memray_allocator(l.allocator), l.node, l.count)))
                return nullptr;
        }
        return list.release();
    }
    std::map<std::pair<uint32_t, uint8_t>, std::pair<uint64_t, uint64_t>> merged;
    for (const report::LocationAmount& l : s.locations) {
        auto& m = merged[{l.node, uint8_t(l.allocator)}];
        m.first += l.count;
        m.second += l.bytes;
    }
    for (const auto& [key, amount] : merged) {
        if (!append(make_record(self, 0, 0, amount.second,
                                memray_allocator(format::Allocator(key.second)), key.first,
                                amount.first)))
            return nullptr;
    }
    return list.release();
}

// records(view, merge_threads, threshold): view 0 high-water mark, 1 leaks, 2 temporary.
PyObject* capture_records(PyObject* self, PyObject* args) {
    int view = 0, merge = 1;
    unsigned long long threshold = 1;
    if (!PyArg_ParseTuple(args, "ipK", &view, &merge, &threshold)) return nullptr;
    try {
        const Capture& c = capture_of(self);
        if (view == 0) return location_list(self, c.high_water_mark(), merge != 0);
        auto kind = view == 1 ? report::SnapshotKind::Leaks : report::SnapshotKind::Temporary;
        report::Snapshot s;
        without_gil([&] { s = c.view(kind, threshold, false); });
        return location_list(self, s, merge != 0);
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

// temporal(merge_threads): [(tid, allocator, stack_id, native_stack_id, generation,
// [(allocated_before_snapshot, deallocated_before_snapshot or None, n_allocations, n_bytes)])].
// Interval i of the view runs from memory snapshot i to i + 1, i.e. before snapshot i + 1 in
// memray's counting.
PyObject* capture_temporal(PyObject* self, PyObject* args) {
    int merge = 1;
    if (!PyArg_ParseTuple(args, "p", &merge)) return nullptr;
    try {
        const Capture& c = capture_of(self);
        report::Snapshot s;
        without_gil([&] { s = c.view(report::SnapshotKind::HighWaterMark, 1, true); });
        using Key = std::tuple<uint64_t, uint32_t, uint8_t>;  // tid, node, allocator
        using Span = std::pair<uint32_t, uint32_t>;            // allocated_in, freed_in
        std::map<Key, std::map<Span, std::pair<uint64_t, uint64_t>>> by_location;
        for (const report::IntervalAmount& i : s.intervals) {
            const report::LocationAmount& l = s.locations[i.location];
            Key key{merge ? 0 : c.tid_of(l.thread), l.node, uint8_t(l.allocator)};
            auto& a = by_location[key][{i.allocated_in, i.freed_in}];
            a.first += i.count;
            a.second += i.bytes;
        }
        PyRef list(PyList_New(0));
        if (!list) return nullptr;
        for (const auto& [key, spans] : by_location) {
            PyRef intervals(PyList_New(0));
            if (!intervals) return nullptr;
            for (const auto& [span, amount] : spans) {
                PyObject* freed = span.second == report::IntervalAmount::k_never
                                      ? (Py_INCREF(Py_None), Py_None)
                                      : PyLong_FromUnsignedLong(span.second + 1ul);
                PyRef t(Py_BuildValue("(kNKK)", span.first + 1ul, freed,
                                      (unsigned long long)amount.first,
                                      (unsigned long long)amount.second));
                if (!t || PyList_Append(intervals.get(), t.get()) != 0) return nullptr;
            }
            auto [tid, node, allocator] = key;
            PyRef t(Py_BuildValue("(KlIIiO)", (unsigned long long)tid,
                                  memray_allocator(format::Allocator(allocator)), unsigned(node),
                                  unsigned(node), 0, intervals.get()));
            if (!t || PyList_Append(list.get(), t.get()) != 0) return nullptr;
        }
        return list.release();
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

// temporal_hwm(merge_threads): ([(tid, allocator, stack_id, native_stack_id, generation,
// [(first interval, interval after the last or None, n_allocations, n_bytes)])], high-water
// mark bytes per interval).
PyObject* capture_temporal_hwm(PyObject* self, PyObject* args) {
    int merge = 1;
    if (!PyArg_ParseTuple(args, "p", &merge)) return nullptr;
    try {
        const Capture& c = capture_of(self);
        TemporalHighWaterMark t;
        without_gil([&] { t = c.temporal_high_water_mark(merge != 0); });
        PyRef records(PyList_New(0)), hwm(PyList_New(0));
        if (!records || !hwm) return nullptr;
        for (uint64_t bytes : t.hwm_bytes) {
            PyRef v(PyLong_FromUnsignedLongLong(bytes));
            if (!v || PyList_Append(hwm.get(), v.get()) != 0) return nullptr;
        }
        for (size_t i = 0; i < t.runs.size();) {
            uint32_t loc = t.runs[i].location;
            PyRef intervals(PyList_New(0));
            if (!intervals) return nullptr;
            for (; i < t.runs.size() && t.runs[i].location == loc; ++i) {
                const TemporalRun& r = t.runs[i];
                PyObject* end = r.end == TemporalRun::k_open ? (Py_INCREF(Py_None), Py_None)
                                                              : PyLong_FromUnsignedLong(r.end);
                PyRef v(Py_BuildValue("(INKK)", r.start, end, (unsigned long long)r.count,
                                      (unsigned long long)r.bytes));
                if (!v || PyList_Append(intervals.get(), v.get()) != 0) return nullptr;
            }
            const TemporalLocation& l = t.locations[loc];
            PyRef v(Py_BuildValue("(KlIIiO)", (unsigned long long)(merge ? 0 : c.tid_of(l.thread)),
                                  memray_allocator(l.allocator), l.node, l.node, 0, intervals.get()));
            if (!v || PyList_Append(records.get(), v.get()) != 0) return nullptr;
        }
        return Py_BuildValue("(OO)", records.get(), hwm.get());
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

// stack(node, kind, max): kind 0 Python, 1 native, 2 hybrid; max 0 = all.
PyObject* capture_stack(PyObject* self, PyObject* args) {
    unsigned int node = 0;
    int kind = 0;
    Py_ssize_t max = 0;
    if (!PyArg_ParseTuple(args, "Iin", &node, &kind, &max)) return nullptr;
    return capture_stack_list(self, node, kind, max > 0 ? size_t(max) : 0);
}

PyObject* capture_thread_name_method(PyObject* self, PyObject* args) {
    unsigned long long tid = 0;
    if (!PyArg_ParseTuple(args, "K", &tid)) return nullptr;
    return capture_thread_name(self, tid);
}

PyObject* capture_events(PyObject* self, PyObject*) {
    std::unique_ptr<format::Reader> reader;
    try {
        reader = std::make_unique<format::Reader>(capture_of(self).path());
    } catch (...) {
        set_python_error();
        return nullptr;
    }
    auto alloc = reinterpret_cast<allocfunc>(PyType_GetSlot(g_event_iterator_type, Py_tp_alloc));
    PyObject* it = alloc(g_event_iterator_type, 0);
    if (it == nullptr) return nullptr;
    auto* e = reinterpret_cast<PyEventIterator*>(it);
    Py_INCREF(self);
    e->owner = self;
    e->reader = reader.release();
    return it;
}

PyMethodDef k_capture_methods[] = {
    {"header", capture_header, METH_NOARGS, "The capture's header and first-pass totals."},
    {"memory_snapshots", capture_memory_snapshots, METH_NOARGS,
     "[(ms since the epoch, rss, heap)], downsampled to max_memory_records."},
    {"records", capture_records, METH_VARARGS,
     "records(view, merge_threads, threshold): the AllocationRecords of a view (0 hwm, 1 leaks, "
     "2 temporary)."},
    {"temporal", capture_temporal, METH_VARARGS,
     "temporal(merge_threads): temporal record tuples with their intervals."},
    {"temporal_hwm", capture_temporal_hwm, METH_VARARGS,
     "temporal_hwm(merge_threads): (records with their intervals, high-water mark per interval)."},
    {"stack", capture_stack, METH_VARARGS,
     "stack(node, kind, max): [(function, file, line)], innermost first."},
    {"thread_name", capture_thread_name_method, METH_VARARGS, "thread_name(tid) -> str"},
    {"events", capture_events, METH_NOARGS, "An iterator over every event as an AllocationRecord."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot k_capture_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(capture_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(capture_dealloc)},
    {Py_tp_methods, k_capture_methods},
    {Py_tp_doc, const_cast<char*>("CaptureFile(path, max_memory_records=10000, "
                                  "report_progress=False): one capture, read once.")},
    {0, nullptr},
};

PyType_Spec k_capture_spec = {"memray._memray.CaptureFile", sizeof(PyCapture), 0,
                              Py_TPFLAGS_DEFAULT, k_capture_slots};

// --- EventIterator

void event_iterator_dealloc(PyObject* self) {
    auto* e = reinterpret_cast<PyEventIterator*>(self);
    delete e->reader;
    Py_XDECREF(e->owner);
    free_instance(self);
}

PyObject* event_iterator_iter(PyObject* self) {
    Py_INCREF(self);
    return self;
}

PyObject* event_iterator_next(PyObject* self) {
    auto* e = reinterpret_cast<PyEventIterator*>(self);
    if (e->reader == nullptr) return nullptr;
    try {
        for (;;) {
            format::Reader::Item item = e->reader->next();
            if (item == format::Reader::Item::End) {
                delete e->reader;  // done: the file is closed at once, not when `self` dies
                e->reader = nullptr;
                return nullptr;  // StopIteration
            }
            if (item != format::Reader::Item::Event) continue;
            const format::Event& ev = e->reader->event();
            const auto& threads = e->reader->threads();
            uint64_t tid = ev.thread < threads.size() ? threads[ev.thread].tid : 0;
            return make_record(e->owner, tid, ev.address, ev.size, memray_allocator(ev.allocator),
                               ev.node, 1);
        }
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

PyType_Slot k_event_iterator_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(event_iterator_dealloc)},
    {Py_tp_iter, reinterpret_cast<void*>(event_iterator_iter)},
    {Py_tp_iternext, reinterpret_cast<void*>(event_iterator_next)},
    {0, nullptr},
};

PyType_Spec k_event_iterator_spec = {"memray._memray.EventIterator", sizeof(PyEventIterator), 0,
                                     Py_TPFLAGS_DEFAULT, k_event_iterator_slots};

}  // namespace

PyObject* capture_stack_list(PyObject* capture, unsigned int node, int kind, size_t max) {
    try {
        StackKind k = kind == 1 ? StackKind::Native : kind == 2 ? StackKind::Hybrid : StackKind::Python;
        std::vector<report::Frame> frames = capture_of(capture).stack(node, k, max);
        PyRef list(PyList_New(Py_ssize_t(frames.size())));
        if (!list) return nullptr;
        for (size_t i = 0; i < frames.size(); ++i) {
            PyObject* t = Py_BuildValue("(NNI)", to_str(frames[i].function),
                                        to_str(frames[i].file), unsigned(frames[i].line));
            if (t == nullptr) return nullptr;
            PyList_SetItem(list.get(), Py_ssize_t(i), t);  // steals t
        }
        return list.release();
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

long memray_allocator(unsigned format_allocator) {
    return k_memray_allocator[format_allocator & format::k_allocator_max];
}

PyObject* capture_thread_name(PyObject* capture, unsigned long long tid) {
    // The latest thread with that id (the kernel reuses ids of threads that ended).
    const auto& threads = capture_of(capture).reader().threads();
    for (size_t i = threads.size(); i-- > 1;) {
        if (threads[i].tid == tid) return to_str(threads[i].name);
    }
    return to_str("");
}

bool add_capture_types(PyObject* module) {
    g_capture_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&k_capture_spec));
    if (g_capture_type == nullptr) return false;
    g_event_iterator_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&k_event_iterator_spec));
    if (g_event_iterator_type == nullptr) return false;
    // PyModule_AddObject steals a reference on success only; the globals keep their own.
    Py_INCREF(g_capture_type);
    if (PyModule_AddObject(module, "CaptureFile", reinterpret_cast<PyObject*>(g_capture_type)) != 0) {
        Py_DECREF(g_capture_type);
        return false;
    }
    Py_INCREF(g_event_iterator_type);
    if (PyModule_AddObject(module, "EventIterator",
                           reinterpret_cast<PyObject*>(g_event_iterator_type)) != 0) {
        Py_DECREF(g_event_iterator_type);
        return false;
    }
    return true;
}

}  // namespace memray::python
