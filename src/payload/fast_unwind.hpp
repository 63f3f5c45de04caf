// A native stack walker for x86-64 that does per frame only a table lookup and two loads.
//
// libunwind's unw_backtrace initializes a full cursor on every call (about two thirds of its
// cost on a shallow stack, measured with perf on bench/workloads/native_churn.c). Here the rule
// of each return address (how to find the caller's frame: CFA = rsp or rbp + offset, the return
// address at CFA - 8, rbp restored from CFA + n or unchanged) is read once from the object's
// .eh_frame (through .eh_frame_hdr's search table) and kept in a lock-free table. Whatever is not
// such a simple rule (CFA or register expressions, signal frames, no unwind info, a frame that
// does not move up the stack) makes the walk give up, and the caller uses libunwind for that
// event: the walker never guesses.
//
// MEMRAY_FAST_UNWIND=0 turns it off (libunwind for every event). MEMRAY_STACK_CHECK=1 runs both
// on every event and counts the stacks that differ (fast_unwind_report); MEMRAY_STACK_CHECK=abort
// aborts the program at the first difference (the integration tests run with it).
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload {

// Cold path (payload start): reads the environment switches. Returns whether the walker is on.
bool fast_unwind_init() noexcept;
bool fast_unwind_enabled() noexcept;
bool fast_unwind_checking() noexcept;

// A thread's own small cache in front of the shared rule table: a stack mostly repeats the
// return addresses of the previous one, and this lookup is one compare in memory the thread
// alone touches. Zero-initialized = empty.
struct UnwindRuleCache {
    static constexpr size_t k_size = 256;
    uint64_t key[k_size];
    uint64_t rule[k_size];
};

// The thread's previous walk, outermost frame first: each frame's registers (ip, sp, bp) and
// rule. A walk that reaches a frame with the same registers as one of these re-reads only the
// memory the rest of the previous walk read (return-address and rbp slots) and, when every value
// is unchanged, takes the outer frames from here: the walk is a function of the registers and
// those values, so the result is the same, without a rule lookup per frame. A frame's rbp only
// has to match when the rest of the walk reads it (`needs_bp`): in code built without frame
// pointers rbp is an ordinary register (a loop counter, say) that differs on every call, and the
// walk only uses it once a frame's rule takes the CFA from rbp before one restores it.
struct UnwindHistory {
    static constexpr size_t k_max = 160;
    uint64_t generation = 0;  // of the rules used; 0 = no history
    uint32_t count = 0;
    // Set by every walk: how many of its outermost frames it took over from the walk before
    // (they are that walk's outermost frames, in the same order); 0 when none.
    uint32_t reused = 0;
    // Set by every walk: it took frames over after an attempt that failed (counted in check mode).
    bool resumed = false;
    uintptr_t end_slot = 0;  // the walk ended reading 0 here (else at an outermost rule)
    uintptr_t ip[k_max];
    uintptr_t sp[k_max];
    uintptr_t bp[k_max];
    uint64_t rule[k_max];
    bool needs_bp[k_max];  // the walk outward from this frame reads the frame's incoming rbp
    // The memory an attempt from frame d re-reads, as (address, value) pairs, outermost first:
    // pairs [0, checks_below[d]) are those of frames 0..d-1 (each frame's return-address slot,
    // then its saved rbp where the rest of the walk reads it); check_frame[i] is the frame
    // after pair i's (the k that history_differs returns when the pair no longer holds).
    uint32_t checks_below[k_max];
    uintptr_t check_addr[2 * k_max];
    uintptr_t check_value[2 * k_max];
    uint32_t check_frame[2 * k_max];
    // This walk's frames, innermost first, until it is stored.
    uintptr_t new_sp[k_max];
    uintptr_t new_bp[k_max];
    uint64_t new_rule[k_max];
};

// Walks from a frame given by its registers: `ip` is an instruction of that (running) frame, or
// with `returned_to` the return address a call will come back to; `sp` and `bp` its rsp and rbp
// there. Writes the instruction pointer of every frame, innermost first, as unw_backtrace does
// (ip, then return addresses). Returns the count, or -1 when a frame needs the full unwinder.
int fast_unwind_walk(uintptr_t ip, uintptr_t sp, uintptr_t bp, bool returned_to, uintptr_t* out,
                     int max, UnwindRuleCache& cache, UnwindHistory& history) noexcept;

// The same walk without the history, stopping after the `count`-th frame whose address is in
// [lo, hi) (that frame included). Returns the frames written, all of them when the walk ended
// or was cut at `max` before that, or -1 when a frame needs the full unwinder. `stopped` tells
// which. Leaves the history as it was.
int fast_unwind_walk_until(uintptr_t ip, uintptr_t sp, uintptr_t bp, bool returned_to,
                           uintptr_t* out, int max, UnwindRuleCache& cache, uintptr_t lo,
                           uintptr_t hi, size_t count, bool& stopped) noexcept;

// Loaded objects changed (dlopen/dlclose): rules found so far may describe unmapped code.
void fast_unwind_objects_changed() noexcept;

// Check mode: one event compared (`same`: the walk gave libunwind's frames; `fell_back`: the
// walk gave up and libunwind's frames were used; `resumed`: the walk took frames over from the
// one before after an attempt to do so had failed; `stopped`: fast_unwind_walk_until() stopped
// at its frame, and `same` compared the frames it gave).
void fast_unwind_count_check(bool same, bool fell_back, bool resumed, bool stopped) noexcept;
// Logs the check counts (at stop): an error line when any stack differed, else a debug line.
void fast_unwind_report() noexcept;

}  // namespace memray::payload
