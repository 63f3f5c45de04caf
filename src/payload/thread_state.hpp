// Per-thread tracker state shared by the tracker (producer side, tracker.cpp) and the writer
// thread (consumer side, writer.cpp). Lives in mmap'd memory; TLS only holds a pointer to it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>

#include "payload/python_stack.hpp"
#include "payload/stack_intern.hpp"

namespace memray::payload {

// CLOCK_MONOTONIC through the vDSO: measured here at ~36 ns, against ~30 ns for an *ordered*
// rdtsc (lfence; rdtsc), which would also need calibrating. The writer's merge relies on reads
// being ordered with the surrounding memory accesses (see writer.cpp), so plain rdtsc is out.
inline uint64_t now_ns() noexcept {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

struct RawEvent {
    uint64_t time_ns;
    uint64_t address;
    uint64_t size;
    uint32_t node;
    uint8_t kind;  // format::Allocator
    uint8_t pad[3];
};
static_assert(sizeof(RawEvent) == 32);

// Power of two. 256 KiB per thread, touched only as far as the thread gets; the writer is woken
// at half full, so a busy thread wakes it about every 4096 events.
inline constexpr uint32_t k_ring_capacity = 8192;
inline constexpr uint32_t k_ring_mask = k_ring_capacity - 1;
inline constexpr size_t k_max_python_frames = 128;
inline constexpr size_t k_max_native_frames = 128;

enum class StateStatus : uint32_t {
    Free = 0,    // may be taken by a new thread (ring drained, owner gone)
    Live = 1,    // owned by a running thread
    Exited = 2,  // owner ran its TLS destructors; the writer recycles it once the tid is gone
};

struct alignas(64) ThreadState {
    // --- written by the owning thread (producer)
    std::atomic<uint64_t> head{0};
    uint64_t cached_tail = 0;
    std::atomic<uint32_t> busy{0};  // inside a record call; stop waits for 0
    uint32_t session = 0;           // session the prefix cache belongs to

    // --- written by the writer (consumer)
    alignas(64) std::atomic<uint64_t> tail{0};
    std::atomic<uint32_t> tail_seq{0};          // futex word, bumped when tail advances
    std::atomic<uint32_t> producer_waiting{0};  // the owner sleeps on tail_seq (ring full)
    uint32_t writer_session = 0;                // session in which thread_index was assigned
    uint32_t thread_index = 0;
    uint32_t name_seq_seen = 0;

    // --- registry and names (rare)
    alignas(64) ThreadState* next = nullptr;  // global list, append-only
    std::atomic<uint32_t> status{0};
    std::atomic<long> tid{0};
    std::atomic<uint32_t> name_seq{0};  // bumped on every rename
    std::atomic<bool> name_lock{false};
    char name[64] = {};  // explicit name given to record_thread_name ("" = read comm)

    // --- owner-only scratch (kept off the stack: threads may have tiny stacks)
    PrefixCache cache;
    PyFrameRef py_frames[k_max_python_frames];
    uintptr_t native_frames[k_max_native_frames];
    StackFrame frames[k_max_python_frames + k_max_native_frames];

    alignas(64) RawEvent ring[k_ring_capacity];
};

// --- tracker.cpp, used by api.cpp and writer.cpp (cold paths)

// One-time setup (pthread key, membarrier registration, intern tables). Returns false on failure.
bool tracker_init() noexcept;
// Prepares a new capture: forgets every node and code id, starts a new session number.
// `python`: walk Python frames; `native`: walk native frames.
void tracker_begin_session(bool python, bool native) noexcept;
uint32_t tracker_session() noexcept;
void tracker_set_enabled(bool on) noexcept;
// After tracking was switched off: returns once no thread is inside a record call.
void tracker_wait_quiescent() noexcept;
// Head of the append-only list of thread states.
ThreadState* thread_list() noexcept;
// True once after notify_objects_changed() was called.
bool tracker_take_objects_changed() noexcept;
// In a forked child: tracking off, every other thread's state forgotten.
void tracker_after_fork_child() noexcept;
// Locks the name of a state (record_thread_name vs. the writer's copy).
void state_name_lock(ThreadState* s) noexcept;
void state_name_unlock(ThreadState* s) noexcept;

// --- writer.cpp, used by the tracker's hot path (rare: half-full or full ring)
void writer_wake() noexcept;

}  // namespace memray::payload
