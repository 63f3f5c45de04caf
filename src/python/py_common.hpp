// Shared by the extension's files: the stable-ABI Python header, an owning reference, and the
// one place where C++ exceptions become Python exceptions.
//
// The module is built once against any CPython >= 3.8 headers with Py_LIMITED_API = 3.8 and
// loads in every CPython from 3.8 on (`_memray.abi3.so`), so only the stable ABI may be used
// here: no PyTuple_SET_ITEM, no struct internals, heap types from PyType_FromSpec.
#pragma once

#ifndef Py_LIMITED_API
#error "the extension must be built with Py_LIMITED_API (see python/memray/meson.build)"
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <exception>
#include <string>

namespace memray::python {

// Runs `f` with the GIL released (long reads of a capture must not stop the program's other
// threads); an exception from `f` is rethrown once the GIL is held again.
template <typename F>
void without_gil(F&& f) {
    std::exception_ptr error;
    PyThreadState* state = PyEval_SaveThread();
    try {
        f();
    } catch (...) {
        error = std::current_exception();
    }
    PyEval_RestoreThread(state);
    if (error) std::rethrow_exception(error);
}

// An owned reference, released at scope exit.
class PyRef {
  public:
    PyRef() = default;
    explicit PyRef(PyObject* o) : m_obj(o) {}
    ~PyRef() { Py_XDECREF(m_obj); }
    PyRef(const PyRef&) = delete;
    PyRef& operator=(const PyRef&) = delete;
    PyRef(PyRef&& o) noexcept : m_obj(o.release()) {}
    PyRef& operator=(PyRef&& o) noexcept {
        PyObject* old = m_obj;
        m_obj = o.release();
        Py_XDECREF(old);
        return *this;
    }
    PyObject* get() const { return m_obj; }
    PyObject* release() {
        PyObject* o = m_obj;
        m_obj = nullptr;
        return o;
    }
    explicit operator bool() const { return m_obj != nullptr; }

  private:
    PyObject* m_obj = nullptr;
};

// Decodes UTF-8 from the capture; invalid bytes (a file name in another encoding) never fail.
PyObject* to_str(const std::string& s);

// Sets the Python exception for the C++ exception being handled (call inside a catch block):
// format::FileError -> OSError (FileNotFoundError for a missing file), format::FormatError and
// anything else -> memray.MemrayError, std::bad_alloc -> MemoryError.
void set_python_error();

// Types and functions of the extension, registered by module.cpp.
bool add_capture_types(PyObject* module);
bool add_record_type(PyObject* module);
bool add_live_type(PyObject* module);  // py_live.cpp: LiveStream, for memray.SocketReader

// py_capture.cpp, for the records: stack `kind` (0 Python, 1 native, 2 hybrid) of `node` as a
// list of (function, file, line), at most `max` frames (0 = all); a thread's name by OS id.
PyObject* capture_stack_list(PyObject* capture, unsigned int node, int kind, size_t max);
PyObject* capture_thread_name(PyObject* capture, unsigned long long tid);
// memray's AllocatorType value of a format::Allocator number (memray numbers them differently).
long memray_allocator(unsigned format_allocator);

// py_record.cpp: a new memray.AllocationRecord of `capture` (may be nullptr).
PyObject* make_record(PyObject* capture, unsigned long long tid, unsigned long long address,
                      unsigned long long size, long allocator, unsigned int node,
                      unsigned long long count);
extern PyMethodDef k_payload_methods[];

}  // namespace memray::python
