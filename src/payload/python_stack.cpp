// Reads the calling thread's CPython frame chain directly from the interpreter's structures.
//
// Why no GIL is needed: a thread's frame chain is only ever changed by that thread, and we only
// walk our own thread's chain, synchronously, from inside a hook it called. Nothing here calls
// the Python API except the three GIL-free entry points below (version, "is initialized", and
// the thread's own state), and nothing allocates.
//
// Every offset below was checked with offsetof() against the internal headers of the pyenv
// interpreters (3.8.18, 3.9.18, 3.10.13, 3.11.7, 3.12.1, 3.13.0) and of Debian's python3.11-dev
// (3.11.2, identical to 3.11.7). 3.13 also publishes most of them in _Py_DebugOffsets, which we
// prefer when present.
#include "payload/python_stack.hpp"

#include <dlfcn.h>

#include <atomic>
#include <cstring>

namespace memray::payload {
namespace {

enum class Model : uint8_t {
    FrameObject,       // 3.8-3.10: tstate->frame, PyFrameObject chain
    CFrame,            // 3.11-3.12: tstate->cframe->current_frame, _PyInterpreterFrame chain
    InterpreterFrame,  // 3.13: tstate->current_frame, _PyInterpreterFrame chain
};

struct Layout {
    uint32_t version;  // 0xMMmm
    Model model;
    bool lasti_is_index;  // 3.10: f_lasti counts code units, not bytes
    // PyThreadState
    uint32_t ts_frame;          // frame (3.8-3.10), cframe (3.11-3.12), current_frame (3.13)
    uint32_t cframe_current;    // _PyCFrame.current_frame (3.11-3.12)
    // PyFrameObject / _PyInterpreterFrame
    uint32_t fr_back;           // f_back / previous
    uint32_t fr_code;           // f_code / f_executable
    uint32_t fr_instr;          // f_lasti (int) / prev_instr / instr_ptr (pointer)
    uint32_t fr_owner;          // owner (char), 3.11+
    // PyCodeObject
    uint32_t co_firstlineno;
    uint32_t co_name;
    uint32_t co_qualname;       // 0 before 3.11
    uint32_t co_filename;
    uint32_t co_linetable;      // co_lnotab (3.8-3.9) / co_linetable
    uint32_t co_firsttraceable; // 3.11+
    uint32_t co_code_adaptive;  // 3.11+: first code unit, inline in the object
    // PyUnicode: sizeof(PyASCIIObject), sizeof(PyCompactUnicodeObject)
    uint32_t ascii_size;
    uint32_t compact_size;
};

// Offsets common to all versions (release builds, x86_64).
constexpr uint32_t k_ob_type = 8;
constexpr uint32_t k_ob_size = 16;      // PyVarObject.ob_size
constexpr uint32_t k_tp_name = 24;      // PyTypeObject.tp_name
constexpr uint32_t k_bytes_sval = 32;   // PyBytesObject.ob_sval
constexpr uint32_t k_str_length = 16;   // PyASCIIObject.length
constexpr uint32_t k_str_state = 32;    // PyASCIIObject.state (bit field word)

constexpr uint8_t k_owned_by_generator = 1;
constexpr uint8_t k_owned_by_cstack = 3;  // 3.12+: shim/entry frames owned by the C stack

constexpr Layout k_layouts[] = {
    {0x0308, Model::FrameObject, false, 24, 0, 24, 32, 104, 0, 40, 112, 0, 104, 120, 0, 0, 48, 72},
    {0x0309, Model::FrameObject, false, 24, 0, 24, 32, 104, 0, 40, 112, 0, 104, 120, 0, 0, 48, 72},
    {0x030a, Model::FrameObject, true, 24, 0, 24, 32, 96, 0, 40, 112, 0, 104, 120, 0, 0, 48, 72},
    {0x030b, Model::CFrame, false, 56, 8, 48, 32, 56, 69, 72, 120, 128, 112, 136, 168, 184, 48, 72},
    {0x030c, Model::CFrame, false, 56, 0, 8, 0, 56, 70, 68, 120, 128, 112, 136, 176, 192, 40, 56},
    {0x030d, Model::InterpreterFrame, false, 72, 0, 8, 0, 56, 70, 68, 120, 128, 112, 136, 184, 200,
     40, 56},
};

using GetStateFn = void* (*)();
using IsInitializedFn = int (*)();
using GetVersionFn = const char* (*)();

// Written by python_init() (the thread starting a session) before tracking starts; the release
// store on `layout` publishes the rest to the hot path, which only reads.
struct PythonState {
    Layout layout_storage{};
    std::atomic<const Layout*> layout{nullptr};
    GetStateFn get_state = nullptr;
    IsInitializedFn is_initialized = nullptr;
    const void* code_type = nullptr;
    const void* bytes_type = nullptr;
    const void* unicode_type = nullptr;
    char version[32] = "";
    // python_set_root(): the walk stops at a frame running this code (compared, never read).
    std::atomic<const void*> root{nullptr};
};
constinit PythonState g_python;

// User-space, non-NULL and pointer-aligned: anything else on a chain means we misread it.
inline bool plausible(const void* p) {
    auto v = reinterpret_cast<uintptr_t>(p);
    return v >= 4096 && v < (uintptr_t(1) << 47) && (v & 7) == 0;
}

template <typename T>
inline T load(const void* base, uint32_t offset) {
    T v;
    std::memcpy(&v, static_cast<const char*>(base) + offset, sizeof(T));
    return v;
}

inline const void* load_ptr(const void* base, uint32_t offset) {
    return load<const void*>(base, offset);
}

inline bool has_type(const void* object, const void* type) {
    return plausible(object) && type != nullptr && load_ptr(object, k_ob_type) == type;
}

// python_code_fingerprint(). Another code object allocated at a freed one's address has other
// name, file and line-table objects; the rotations keep equal pointers in two fields from
// cancelling out. Independent loads and no carry chain: it runs for every frame of every event.
inline uint64_t fingerprint_of(const Layout& l, const void* code) {
    auto word = [&](uint32_t at) { return uint64_t(uintptr_t(load_ptr(code, at))); };
    auto rotl = [](uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
    uint64_t first = uint32_t(load<int32_t>(code, l.co_firstlineno));
    return word(l.co_name) ^ rotl(word(l.co_filename), 21) ^ rotl(word(l.co_linetable), 42) ^
           rotl(first, 47);
}

// 3.13 keeps the authoritative offsets at the start of _PyRuntime; a patch release that moved a
// field is then still read correctly. Positions inside _Py_DebugOffsets (3.13.0 header).
void apply_debug_offsets(Layout& l) {
    const auto* rt = static_cast<const char*>(dlsym(RTLD_DEFAULT, "_PyRuntime"));
    if (rt == nullptr || std::memcmp(rt, "xdebugpy", 8) != 0) return;
    uint64_t version = load<uint64_t>(rt, 8);
    if (((version >> 16) & 0xffff) != 0x030d) return;
    auto get = [rt](uint32_t at) { return uint32_t(load<uint64_t>(rt, at)); };
    uint32_t adaptive = get(344);
    l.ts_frame = get(184);
    l.fr_back = get(232);
    l.fr_code = get(240);
    l.fr_instr = get(248);
    l.fr_owner = get(264);
    l.co_filename = get(280);
    l.co_name = get(288);
    l.co_qualname = get(296);
    l.co_linetable = get(304);
    l.co_firstlineno = get(312);
    // _co_firsttraceable is not published; it sits 16 bytes before co_code_adaptive in 3.11-3.13.
    l.co_firsttraceable = l.co_firsttraceable + adaptive - l.co_code_adaptive;
    l.co_code_adaptive = adaptive;
    l.ascii_size = get(560);
}

bool is_free_threaded_313() {
    const auto* rt = static_cast<const char*>(dlsym(RTLD_DEFAULT, "_PyRuntime"));
    return rt != nullptr && std::memcmp(rt, "xdebugpy", 8) == 0 && load<uint64_t>(rt, 16) != 0;
}

// Appends the UTF-8 encoding of `cp` at `pos` if it fits before the terminator; returns the new
// position, or 0 when it does not fit (a character is never split).
size_t put_utf8(char* out, size_t pos, size_t cap, uint32_t cp) {
    if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) cp = 0xfffd;  // lone surrogates
    char buf[4];
    size_t n;
    if (cp < 0x80) {
        buf[0] = char(cp);
        n = 1;
    } else if (cp < 0x800) {
        buf[0] = char(0xc0 | (cp >> 6));
        buf[1] = char(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        buf[0] = char(0xe0 | (cp >> 12));
        buf[1] = char(0x80 | ((cp >> 6) & 0x3f));
        buf[2] = char(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        buf[0] = char(0xf0 | (cp >> 18));
        buf[1] = char(0x80 | ((cp >> 12) & 0x3f));
        buf[2] = char(0x80 | ((cp >> 6) & 0x3f));
        buf[3] = char(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (pos + n >= cap) return 0;
    std::memcpy(out + pos, buf, n);
    return pos + n;
}

// Decodes a str object's code points to UTF-8 without the API (no GIL, no allocation).
bool copy_unicode(const Layout& l, const void* str, char* out, size_t cap) {
    out[0] = '\0';
    if (!has_type(str, g_python.unicode_type)) return false;
    auto length = load<int64_t>(str, k_str_length);
    uint32_t state = load<uint32_t>(str, k_str_state);
    unsigned kind = (state >> 2) & 7;
    bool compact = (state >> 5) & 1;
    bool ascii = (state >> 6) & 1;
    if (length < 0 || (kind != 1 && kind != 2 && kind != 4)) return false;
    const void* data;
    if (compact) {
        data = static_cast<const char*>(str) + (ascii ? l.ascii_size : l.compact_size);
    } else {
        // Legacy string (3.8-3.11 only): data.any follows the compact header.
        // Legacy string (3.8-3.11, made by the old C API): data.any follows the compact header,
        // valid only once the string is "ready" (bit 7 of the state word).
        if (l.version >= 0x030c || ((state >> 7) & 1) == 0) return false;
        data = load_ptr(str, l.compact_size);
        if (!plausible(data)) return false;
    }
    size_t pos = 0;
    for (int64_t i = 0; i < length; ++i) {
        uint32_t cp;
        if (kind == 1) {
            cp = static_cast<const uint8_t*>(data)[i];
        } else if (kind == 2) {
            cp = load<uint16_t>(data, uint32_t(i * 2));
        } else {
            cp = load<uint32_t>(data, uint32_t(i * 4));
        }
        size_t next = put_utf8(out, pos, cap, cp);
        if (next == 0) break;  // truncated
        pos = next;
    }
    out[pos] = '\0';
    return true;
}

}  // namespace

bool python_init() noexcept {
    if (g_python.layout.load(std::memory_order_acquire) != nullptr) return true;
    auto get_version = reinterpret_cast<GetVersionFn>(dlsym(RTLD_DEFAULT, "Py_GetVersion"));
    auto get_state =
        reinterpret_cast<GetStateFn>(dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState"));
    auto is_initialized = reinterpret_cast<IsInitializedFn>(dlsym(RTLD_DEFAULT, "Py_IsInitialized"));
    const void* code_type = dlsym(RTLD_DEFAULT, "PyCode_Type");
    const void* bytes_type = dlsym(RTLD_DEFAULT, "PyBytes_Type");
    const void* unicode_type = dlsym(RTLD_DEFAULT, "PyUnicode_Type");
    if (!get_version || !get_state || !is_initialized || !code_type || !bytes_type ||
        !unicode_type) {
        return false;
    }
    // Py_TRACE_REFS builds put two extra pointers in every object header.
    if (dlsym(RTLD_DEFAULT, "_Py_PrintReferences") != nullptr) return false;

    // Py_GetVersion() is "3.11.7 (main, ...": no GIL needed, it only formats a static buffer.
    const char* text = get_version();
    if (text == nullptr) return false;
    unsigned major = 0, minor = 0;
    size_t i = 0;
    while (text[i] >= '0' && text[i] <= '9') major = major * 10 + unsigned(text[i++] - '0');
    if (text[i++] != '.') return false;
    while (text[i] >= '0' && text[i] <= '9') minor = minor * 10 + unsigned(text[i++] - '0');
    uint32_t version = (major << 8) | minor;

    const Layout* found = nullptr;
    for (const Layout& l : k_layouts) {
        if (l.version == version) found = &l;
    }
    if (found == nullptr) return false;
    g_python.layout_storage = *found;
    if (version == 0x030d) {
        if (is_free_threaded_313()) return false;  // different object header
        apply_debug_offsets(g_python.layout_storage);
    }
    // Cross-check the object header layout on a type we know.
    const char* type_name = static_cast<const char*>(load_ptr(code_type, k_tp_name));
    if (type_name == nullptr || std::strcmp(type_name, "code") != 0) return false;

    size_t n = 0;
    while (n + 1 < sizeof(g_python.version) && text[n] != '\0' && text[n] != ' ') {
        g_python.version[n] = text[n];
        ++n;
    }
    g_python.version[n] = '\0';
    g_python.get_state = get_state;
    g_python.is_initialized = is_initialized;
    g_python.code_type = code_type;
    g_python.bytes_type = bytes_type;
    g_python.unicode_type = unicode_type;
    g_python.layout.store(&g_python.layout_storage, std::memory_order_release);
    return true;
}

const char* python_version_string() noexcept {
    return g_python.layout.load(std::memory_order_acquire) ? g_python.version : "";
}

const char* python_allocator_name() noexcept {
    if (g_python.layout.load(std::memory_order_acquire) == nullptr) return "";
    // Before initialization PYTHONMALLOC is not applied yet (a preloaded payload starts then):
    // the answer would be the build's default, not what the program runs with.
    if (!g_python.is_initialized()) return "";
    // Exported by every supported CPython (3.8+) though not in its public headers since 3.13. It
    // compares the installed allocator functions with the known ones: no GIL needed, and the
    // string it returns is a literal of libpython.
    using AllocatorNameFn = const char* (*)();
    auto fn = reinterpret_cast<AllocatorNameFn>(
        dlsym(RTLD_DEFAULT, "_PyMem_GetCurrentAllocatorName"));
    const char* name = fn ? fn() : nullptr;
    return name ? name : "";
}

uint32_t python_line_format() noexcept {
    const Layout* l = g_python.layout.load(std::memory_order_acquire);
    return l ? l->version : 0;
}

void python_set_root(const void* code) noexcept {
    g_python.root.store(code, std::memory_order_relaxed);
}

size_t python_walk(PyFrameRef* out, size_t max, bool stop_at_root, bool* at_root) noexcept {
    const Layout* lp = g_python.layout.load(std::memory_order_acquire);
    if (lp == nullptr || max == 0) return 0;
    const Layout& l = *lp;
    const void* root = stop_at_root ? g_python.root.load(std::memory_order_relaxed) : nullptr;
    // Before initialization (3.12+ would read a TSS key that does not exist yet) and after
    // finalization began, report no Python frames.
    if (!g_python.is_initialized()) return 0;
    const void* tstate = g_python.get_state();
    if (!plausible(tstate)) return 0;

    const void* frame;
    if (l.model == Model::CFrame) {
        const void* cframe = load_ptr(tstate, l.ts_frame);
        if (!plausible(cframe)) return 0;
        frame = load_ptr(cframe, l.cframe_current);
    } else {
        frame = load_ptr(tstate, l.ts_frame);
    }

    size_t n = 0;
    // Entry frames (format/records.hpp, Node): 3.8-3.10 run every frame in its own eval-loop
    // call; 3.11 flags the frame (is_entry, the byte before owner); 3.12+ put a shim frame owned
    // by the C stack just outside it. `last_kept`: the previous frame of the chain was stored
    // as out[n - 1], so a shim found now marks it.
    const bool every_entry = l.model == Model::FrameObject;
    bool last_kept = false;
    // Shim and incomplete frames are skipped, so allow some slack over `max`; the bound also
    // stops a corrupted (cyclic) chain.
    size_t steps_left = 2 * max + 64;
    for (; frame != nullptr && n < max && steps_left > 0;
         frame = load_ptr(frame, l.fr_back), --steps_left) {
        if (!plausible(frame)) break;
        uint8_t owner = 0;
        bool entry = every_entry;
        if (l.model != Model::FrameObject) {
            owner = load<uint8_t>(frame, l.fr_owner);
            uint8_t max_owner = l.version >= 0x030c ? k_owned_by_cstack : k_owned_by_cstack - 1;
            if (owner > max_owner) break;
            if (owner == k_owned_by_cstack) {
                if (last_kept) out[n - 1].entry = true;
                last_kept = false;
                continue;
            }
            if (l.version == 0x030b) entry = load<uint8_t>(frame, l.fr_owner - 1) != 0;
        }
        last_kept = false;
        const void* code = load_ptr(frame, l.fr_code);
        if (code == root && root != nullptr) {
            if (at_root) *at_root = true;
            break;
        }
        if (!has_type(code, g_python.code_type)) break;

        uint32_t offset = 0;
        if (l.model == Model::FrameObject) {
            int lasti = load<int32_t>(frame, l.fr_instr);
            if (lasti > 0) offset = uint32_t(l.lasti_is_index ? lasti * 2 : lasti);
        } else {
            auto start = reinterpret_cast<intptr_t>(code) + intptr_t(l.co_code_adaptive);
            auto instr = reinterpret_cast<intptr_t>(load_ptr(frame, l.fr_instr));
            intptr_t units = (instr - start) / 2;
            // Not yet past the prologue (RESUME etc.): CPython hides these frames as well.
            if (owner != k_owned_by_generator &&
                units < intptr_t(load<int32_t>(code, l.co_firsttraceable))) {
                continue;
            }
            intptr_t size_units = load<int64_t>(code, k_ob_size);
            if (units > size_units) break;
            if (units > 0) offset = uint32_t(units * 2);
        }
        out[n++] = PyFrameRef{code, offset, entry, fingerprint_of(l, code)};
        last_kept = true;
    }
    return n;
}

uint64_t python_code_fingerprint(const void* code) noexcept {
    const Layout* l = g_python.layout.load(std::memory_order_acquire);
    if (l == nullptr || !plausible(code)) return 0;
    return fingerprint_of(*l, code);
}

bool python_code_details(const void* code, PyCodeDetails& out) noexcept {
    out.function[0] = '\0';
    out.file[0] = '\0';
    out.first_line = 0;
    out.line_table = nullptr;
    out.line_table_len = 0;
    const Layout* lp = g_python.layout.load(std::memory_order_acquire);
    if (lp == nullptr || !has_type(code, g_python.code_type)) return false;
    const Layout& l = *lp;
    const void* name = load_ptr(code, l.co_qualname ? l.co_qualname : l.co_name);
    if (!copy_unicode(l, name, out.function, sizeof(out.function))) {
        copy_unicode(l, load_ptr(code, l.co_name), out.function, sizeof(out.function));
    }
    copy_unicode(l, load_ptr(code, l.co_filename), out.file, sizeof(out.file));
    int first_line = load<int32_t>(code, l.co_firstlineno);
    out.first_line = first_line > 0 ? uint32_t(first_line) : 0;
    const void* table = load_ptr(code, l.co_linetable);
    if (has_type(table, g_python.bytes_type)) {
        auto len = load<int64_t>(table, k_ob_size);
        if (len >= 0) {
            out.line_table = static_cast<const uint8_t*>(table) + k_bytes_sval;
            out.line_table_len = size_t(len);
        }
    }
    return true;
}

}  // namespace memray::payload
