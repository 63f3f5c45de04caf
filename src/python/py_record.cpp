// memray.AllocationRecord, in C++: get_allocation_records() makes one per event, so the record
// is a small fixed struct (no tuple, no dict) and the iterator builds it without running any
// Python code. Stacks are resolved by the CaptureFile the record came from, on first use; the
// full stacks (max_stacks=None) are cached per record, as memray caches them.
#include <cstdint>
#include <cstdio>

#include "python/py_common.hpp"

namespace memray::python {

namespace {

struct PyRecord {
    PyObject_HEAD
    PyObject* capture;   // the CaptureFile, or nullptr for a record built from Python
    PyObject* cached[3];  // full stacks by kind (0 Python, 1 native, 2 hybrid)
    unsigned long long tid, address, size, count;
    unsigned int node;
    long allocator;  // memray's AllocatorType value
};

PyTypeObject* g_record_type = nullptr;
PyObject* g_allocator_type = nullptr;  // memray._enums.AllocatorType, imported on first use

constexpr long k_pymalloc_free = 1, k_free = 5, k_munmap = 15;

PyRecord* as_record(PyObject* o) { return reinterpret_cast<PyRecord*>(o); }

// Not subclassable (no Py_TPFLAGS_BASETYPE): the type is always g_record_type.
PyObject* record_new(PyTypeObject*, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"record", "capture", nullptr};
    PyObject* record = nullptr;
    PyObject* capture = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", const_cast<char**>(keywords), &record,
                                     &capture))
        return nullptr;
    unsigned long long tid, address, size, count, native, generation;
    unsigned int node;
    long allocator;
    PyRef fields(PySequence_Tuple(record));
    if (!fields || !PyArg_ParseTuple(fields.get(), "KKKlIKKK", &tid, &address, &size, &allocator,
                                     &node, &count, &native, &generation))
        return nullptr;
    return make_record(capture == Py_None ? nullptr : capture, tid, address, size, allocator, node,
                       count);
}

void record_dealloc(PyObject* self) {
    PyRecord* r = as_record(self);
    Py_XDECREF(r->capture);
    for (PyObject* c : r->cached) Py_XDECREF(c);
    PyTypeObject* type = Py_TYPE(self);
    reinterpret_cast<freefunc>(PyType_GetSlot(type, Py_tp_free))(self);
    Py_DECREF(type);
}

PyObject* record_as_tuple(PyRecord* r) {
    return Py_BuildValue("(KKKlIKIi)", r->tid, r->address, r->size, r->allocator, r->node, r->count,
                         r->node, 0);
}

PyObject* get_tid(PyObject* self, void*) { return PyLong_FromUnsignedLongLong(as_record(self)->tid); }
PyObject* get_address(PyObject* self, void*) {
    return PyLong_FromUnsignedLongLong(as_record(self)->address);
}
PyObject* get_size(PyObject* self, void*) { return PyLong_FromUnsignedLongLong(as_record(self)->size); }
PyObject* get_count(PyObject* self, void*) {
    return PyLong_FromUnsignedLongLong(as_record(self)->count);
}
PyObject* get_node(PyObject* self, void*) { return PyLong_FromUnsignedLong(as_record(self)->node); }
PyObject* get_generation(PyObject*, void*) { return PyLong_FromLong(0); }
PyObject* get_tuple(PyObject* self, void*) { return record_as_tuple(as_record(self)); }

PyObject* get_allocator(PyObject* self, void*) {
    if (g_allocator_type == nullptr) {
        PyRef enums(PyImport_ImportModule("memray._enums"));
        if (!enums) return nullptr;
        g_allocator_type = PyObject_GetAttrString(enums.get(), "AllocatorType");
        if (g_allocator_type == nullptr) return nullptr;
    }
    return PyObject_CallFunction(g_allocator_type, "l", as_record(self)->allocator);
}

PyObject* get_thread_name(PyObject* self, void*) {
    PyRecord* r = as_record(self);
    if (r->tid == 0) return PyUnicode_FromString("merged thread");
    if (r->capture == nullptr) {
        PyErr_SetString(PyExc_ValueError, "Cannot get thread name without reader.");
        return nullptr;
    }
    return capture_thread_name(r->capture, r->tid);
}

PyObject* stack_of(PyObject* self, PyObject* args, PyObject* kwargs, int kind) {
    static const char* keywords[] = {"max_stacks", nullptr};
    PyObject* max_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", const_cast<char**>(keywords), &max_obj))
        return nullptr;
    PyRecord* r = as_record(self);
    if (r->allocator == k_free || r->allocator == k_munmap || r->allocator == k_pymalloc_free) {
        PyErr_SetString(PyExc_NotImplementedError, "Stack traces for deallocations aren't captured.");
        return nullptr;
    }
    if (r->capture == nullptr) {
        PyErr_SetString(PyExc_ValueError, "Cannot get stack trace without reader.");
        return nullptr;
    }
    if (max_obj == Py_None) {
        if (r->cached[kind] == nullptr) {
            r->cached[kind] = capture_stack_list(r->capture, r->node, kind, 0);
            if (r->cached[kind] == nullptr) return nullptr;
        }
        Py_INCREF(r->cached[kind]);
        return r->cached[kind];
    }
    Py_ssize_t max = PyLong_AsSsize_t(max_obj);
    if (max == -1 && PyErr_Occurred()) return nullptr;
    if (max <= 0) return PyList_New(0);
    return capture_stack_list(r->capture, r->node, kind, size_t(max));
}

PyObject* stack_trace(PyObject* self, PyObject* args, PyObject* kwargs) {
    return stack_of(self, args, kwargs, 0);
}
PyObject* native_stack_trace(PyObject* self, PyObject* args, PyObject* kwargs) {
    return stack_of(self, args, kwargs, 1);
}
PyObject* hybrid_stack_trace(PyObject* self, PyObject* args, PyObject* kwargs) {
    return stack_of(self, args, kwargs, 2);
}

PyObject* record_richcompare(PyObject* a, PyObject* b, int op) {
    if (!PyObject_TypeCheck(b, g_record_type) || (op != Py_EQ && op != Py_NE))
        Py_RETURN_NOTIMPLEMENTED;
    PyRecord* x = as_record(a);
    PyRecord* y = as_record(b);
    bool equal = x->tid == y->tid && x->address == y->address && x->size == y->size &&
                 x->allocator == y->allocator && x->node == y->node && x->count == y->count;
    return PyBool_FromLong((op == Py_EQ) == equal);
}

Py_hash_t record_hash(PyObject* self) {
    PyRef t(record_as_tuple(as_record(self)));
    return t ? PyObject_Hash(t.get()) : -1;
}

PyObject* record_repr(PyObject* self) {
    PyRecord* r = as_record(self);
    PyRef allocator(get_allocator(self, nullptr));
    if (!allocator) return nullptr;
    PyRef size;
    if (r->size == 0) {
        size = PyRef(PyUnicode_FromString("N/A"));
    } else {
        PyRef reader(PyImport_ImportModule("memray._reader"));
        if (!reader) return nullptr;
        size = PyRef(PyObject_CallMethod(reader.get(), "size_fmt", "K", r->size));
    }
    if (!size) return nullptr;
    // PyUnicode_FromFormat has no %llx.
    char ids[80];
    std::snprintf(ids, sizeof ids, "tid=0x%llx, address=0x%llx", r->tid, r->address);
    return PyUnicode_FromFormat("AllocationRecord<%s, size=%U, allocator=%R, allocations=%llu>",
                                ids, size.get(), allocator.get(), r->count);
}

PyGetSetDef k_record_getset[] = {
    {"tid", get_tid, nullptr, "OS thread id (0 for records merged over threads)", nullptr},
    {"address", get_address, nullptr, "address (0 for aggregated records)", nullptr},
    {"size", get_size, nullptr, "bytes (the total for aggregated records)", nullptr},
    {"allocator", get_allocator, nullptr, "AllocatorType", nullptr},
    {"stack_id", get_node, nullptr, "stack id", nullptr},
    {"n_allocations", get_count, nullptr, "allocations in this record", nullptr},
    {"native_stack_id", get_node, nullptr, "native stack id (the same tree as stack_id)", nullptr},
    {"native_segment_generation", get_generation, nullptr, "always 0", nullptr},
    {"thread_name", get_thread_name, nullptr, "the thread's name in the capture", nullptr},
    {"_tuple", get_tuple, nullptr, "memray's record tuple", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef k_record_methods[] = {
    {"stack_trace", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(stack_trace)),
     METH_VARARGS | METH_KEYWORDS,
     "stack_trace(max_stacks=None): Python frames (function, file, line), most recent first; on "
     "the thread that entered a Tracker, without the frames above its `with`."},
    {"native_stack_trace",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(native_stack_trace)),
     METH_VARARGS | METH_KEYWORDS,
     "native_stack_trace(max_stacks=None): native frames (symbol, file, line), most recent first."},
    {"hybrid_stack_trace",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(hybrid_stack_trace)),
     METH_VARARGS | METH_KEYWORDS,
     "hybrid_stack_trace(max_stacks=None): native frames with the eval loop's replaced by the "
     "Python frames it ran."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot k_record_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(record_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(record_dealloc)},
    {Py_tp_getset, k_record_getset},
    {Py_tp_methods, k_record_methods},
    {Py_tp_richcompare, reinterpret_cast<void*>(record_richcompare)},
    {Py_tp_hash, reinterpret_cast<void*>(record_hash)},
    {Py_tp_repr, reinterpret_cast<void*>(record_repr)},
    {Py_tp_doc, const_cast<char*>(
                    "AllocationRecord(record, capture=None): one allocation (get_allocation_records) "
                    "or the allocations of one location (the snapshot views).")},
    {0, nullptr},
};

PyType_Spec k_record_spec = {"memray._memray.AllocationRecord", sizeof(PyRecord), 0,
                             Py_TPFLAGS_DEFAULT, k_record_slots};

}  // namespace

PyObject* make_record(PyObject* capture, unsigned long long tid, unsigned long long address,
                      unsigned long long size, long allocator, unsigned int node,
                      unsigned long long count) {
    auto alloc = reinterpret_cast<allocfunc>(PyType_GetSlot(g_record_type, Py_tp_alloc));
    PyObject* self = alloc(g_record_type, 0);  // zeroed
    if (self == nullptr) return nullptr;
    PyRecord* r = as_record(self);
    Py_XINCREF(capture);
    r->capture = capture;
    r->tid = tid;
    r->address = address;
    r->size = size;
    r->count = count;
    r->node = node;
    r->allocator = allocator;
    return self;
}

bool add_record_type(PyObject* module) {
    g_record_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&k_record_spec));
    if (g_record_type == nullptr) return false;
    Py_INCREF(g_record_type);
    if (PyModule_AddObject(module, "AllocationRecord", reinterpret_cast<PyObject*>(g_record_type)) != 0) {
        Py_DECREF(g_record_type);
        return false;
    }
    return true;
}

}  // namespace memray::python
