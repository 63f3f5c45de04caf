// memray._memray: the extension module behind `import memray` (the package's .py files in
// python/memray build the public API on top of it). Module-level functions that need no state:
// compute_statistics and get_symbolic_support; the capture types are in py_capture.cpp, the
// payload control in tracking.cpp.
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <vector>

#include "format/reader.hpp"
#include "python/py_common.hpp"
#include "report/allocation_tracker.hpp"
#include "report/capture.hpp"
#include "report/stack_resolver.hpp"
#include "report/stats.hpp"
#include "report/symbolizer.hpp"

namespace memray::python {

PyObject* to_str(const std::string& s) {
    return PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "replace");
}

namespace {

// memray._errors.MemrayError, looked up when first needed (the package imports us first).
PyObject* memray_error() {
    PyRef errors(PyImport_ImportModule("memray._errors"));
    if (!errors) {
        PyErr_Clear();
        return PyExc_RuntimeError;
    }
    PyObject* cls = PyObject_GetAttrString(errors.get(), "MemrayError");
    if (cls == nullptr) {
        PyErr_Clear();
        return PyExc_RuntimeError;
    }
    Py_DECREF(cls);  // the module keeps it alive
    return cls;
}

}  // namespace

void set_python_error() {
    try {
        throw;
    } catch (const format::FileError& e) {
        std::string what = e.what();
        bool missing = what.rfind("No such file", 0) == 0;
        PyErr_SetString(missing ? PyExc_FileNotFoundError : PyExc_OSError, what.c_str());
    } catch (const format::FormatError& e) {
        PyErr_SetString(memray_error(), e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(memray_error(), e.what());
    } catch (...) {
        PyErr_SetString(memray_error(), "unknown C++ exception");
    }
}

namespace {

PyObject* pairs_to_dict(const std::vector<std::pair<uint64_t, uint64_t>>& pairs) {
    PyRef d(PyDict_New());
    if (!d) return nullptr;
    for (const auto& [k, v] : pairs) {
        PyRef key(PyLong_FromUnsignedLongLong(k)), value(PyLong_FromUnsignedLongLong(v));
        if (!key || !value || PyDict_SetItem(d.get(), key.get(), value.get()) != 0) return nullptr;
    }
    return d.release();
}

PyObject* named_counts(const std::vector<std::pair<std::string, uint64_t>>& items, bool as_dict) {
    PyRef out(as_dict ? PyDict_New() : PyList_New(0));
    if (!out) return nullptr;
    for (const auto& [name, n] : items) {
        if (as_dict) {
            PyRef value(PyLong_FromUnsignedLongLong(n));
            if (!value || PyDict_SetItemString(out.get(), name.c_str(), value.get()) != 0)
                return nullptr;
        } else {
            PyRef t(Py_BuildValue("(NK)", to_str(name), (unsigned long long)n));
            if (!t || PyList_Append(out.get(), t.get()) != 0) return nullptr;
        }
    }
    return out.release();
}

PyObject* module_totals(const std::vector<report::ModuleTotal>& modules) {
    PyRef out(PyList_New(0));
    if (!out) return nullptr;
    for (const report::ModuleTotal& m : modules) {
        PyRef t(Py_BuildValue("(NKK)", to_str(m.module), (unsigned long long)m.num_allocations,
                              (unsigned long long)m.total_bytes));
        if (!t || PyList_Append(out.get(), t.get()) != 0) return nullptr;
    }
    return out.release();
}

// compute_statistics(path, num_largest, report_progress) -> dict with what `memray stats`
// computes (report/stats.hpp); memray/_stats.py turns it into memray's Stats.
PyObject* compute_statistics(PyObject*, PyObject* args) {
    PyObject* path_obj = nullptr;
    Py_ssize_t num_largest = 5;
    int progress = 0;
    if (!PyArg_ParseTuple(args, "O&np", PyUnicode_FSConverter, &path_obj, &num_largest, &progress))
        return nullptr;
    PyRef path_bytes(path_obj);
    if (num_largest <= 0) {
        PyErr_SetString(PyExc_ValueError, "num_largest must be positive");
        return nullptr;
    }
    std::string path(PyBytes_AsString(path_bytes.get()));
    try {
        report::Stats stats;
        uint64_t start_ms = 0, end_ms = 0;
        bool aggregated = false;
        without_gil([&] {
            auto reader = report::open_capture(path);
            const format::Header& h = reader->header();
            if (h.flags & format::k_flag_aggregated) {
                aggregated = true;
                return;
            }
            report::AllocationTracker tracker(true);
            // track_capture reports no progress: `report_progress` has nothing to show yet.
            report::track_capture(*reader, tracker);
            std::unique_ptr<report::Symbolizer> symbolizer;
            if (h.flags & format::k_flag_native) symbolizer = std::make_unique<report::Symbolizer>();
            report::StackResolver resolver(*reader, symbolizer.get());
            stats = report::compute_stats(*reader, tracker, resolver, size_t(num_largest));
            start_ms = h.start_time_unix_ms;
            uint64_t end_us = reader->trailer() ? reader->trailer()->end_time_us
                                                : reader->last_time_us();
            end_ms = start_ms + end_us / 1000;
        });
        if (aggregated) {
            PyErr_SetString(PyExc_NotImplementedError,
                            "Can't compute statistics using a pre-aggregated capture file.");
            return nullptr;
        }
        const report::StatsMetadata& m = stats.metadata;
        return Py_BuildValue(
            "{s:K,s:K,s:K,s:N,s:N,s:N,s:N,s:N,s:N,"
            "s:K,s:K,s:K,s:K,s:N,s:K,s:K,s:O,s:O,s:i,s:N}",
            "total_num_allocations", (unsigned long long)stats.total_num_allocations,
            "total_memory_allocated", (unsigned long long)stats.total_bytes_allocated,
            "peak_memory_allocated", (unsigned long long)stats.peak_memory,
            "allocation_count_by_size", pairs_to_dict(stats.count_by_size),
            "allocation_count_by_allocator", named_counts(stats.allocator_distribution, true),
            "top_locations_by_size", named_counts(stats.top_by_size, false),
            "top_locations_by_count", named_counts(stats.top_by_count, false),
            "top_modules_by_allocation_size", module_totals(stats.top_modules_by_size),
            "top_modules_by_allocation_count", module_totals(stats.top_modules_by_count),
            "start_time_ms", (unsigned long long)start_ms,  //
            "end_time_ms", (unsigned long long)end_ms,      //
            "total_allocations", (unsigned long long)m.total_allocations,
            "total_frames", (unsigned long long)m.total_frames,
            "command_line", to_str(m.command_line),  //
            "pid", (unsigned long long)m.pid,        //
            "main_thread_id", (unsigned long long)m.main_thread_id,
            "has_native_traces", m.has_native_traces ? Py_True : Py_False,
            "trace_python_allocators", m.trace_python_allocators ? Py_True : Py_False,
            "file_format", m.file_format,  //
            "python_allocator", to_str(m.python_allocator));
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

// get_symbolic_support() -> 1 none, 2 function names only, 3 names and lines: how well native
// frames of this interpreter resolve, judged on its eval loop as memray does.
PyObject* get_symbolic_support(PyObject*, PyObject*) {
    void* eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
    if (eval == nullptr) return PyLong_FromLong(1);
    struct Found {
        uint64_t address;
        format::ObjectInfo object;
        bool ok = false;
    } found{reinterpret_cast<uint64_t>(eval), {}};
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) -> int {
            auto* f = static_cast<Found*>(data);
            format::ObjectInfo o;
            o.load_bias = info->dlpi_addr;
            bool inside = false;
            for (int i = 0; i < info->dlpi_phnum; ++i) {
                const auto& ph = info->dlpi_phdr[i];
                if (ph.p_type != PT_LOAD) continue;
                o.segments.emplace_back(ph.p_vaddr, ph.p_memsz);
                uint64_t start = info->dlpi_addr + ph.p_vaddr;
                if (f->address >= start && f->address < start + ph.p_memsz) inside = true;
            }
            if (!inside) return 0;
            o.path = info->dlpi_name ? info->dlpi_name : "";
            f->object = std::move(o);
            f->ok = true;
            return 1;
        },
        &found);
    if (!found.ok) return PyLong_FromLong(1);
    if (found.object.path.empty()) {  // the main program
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) return PyLong_FromLong(1);
        found.object.path.assign(exe, size_t(n));
    }
    try {
        long level = 1;
        without_gil([&] {
            report::Symbolizer symbolizer;
            // symbolize() looks up the address before a return address: pass one past the start.
            for (const report::SourceFrame& f : symbolizer.symbolize(found.object, 0, found.address + 1)) {
                if (f.function.rfind("_PyEval_EvalFrameDefault", 0) != 0) continue;
                level = f.file.empty() ? 2 : 3;
                break;
            }
        });
        return PyLong_FromLong(level);
    } catch (...) {
        set_python_error();
        return nullptr;
    }
}

std::vector<PyMethodDef> module_methods() {
    std::vector<PyMethodDef> methods = {
        {"compute_statistics", compute_statistics, METH_VARARGS,
         "compute_statistics(path, num_largest, report_progress) -> dict"},
        {"get_symbolic_support", get_symbolic_support, METH_NOARGS,
         "get_symbolic_support() -> 1 (none), 2 (function names) or 3 (names and lines)"},
    };
    for (PyMethodDef* m = k_payload_methods; m->ml_name != nullptr; ++m) methods.push_back(*m);
    methods.push_back({nullptr, nullptr, 0, nullptr});
    return methods;
}

PyModuleDef k_module = {
    PyModuleDef_HEAD_INIT,
    "memray._memray",
    "C++ core of the memray package: capture reading and the payload's control.",
    -1,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

}  // namespace memray::python

PyMODINIT_FUNC PyInit__memray(void) {
    using namespace memray::python;
    // Built here, not at static-initialization time: it copies another file's table.
    static std::vector<PyMethodDef> methods = module_methods();
    k_module.m_methods = methods.data();
    PyObject* module = PyModule_Create(&k_module);
    if (module == nullptr) return nullptr;
    if (!add_capture_types(module) || !add_record_type(module) || !add_live_type(module)) {
        Py_DECREF(module);
        return nullptr;
    }
    return module;
}
