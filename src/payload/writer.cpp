#include "payload/writer.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "format/block.hpp"
#include "format/encoder.hpp"
#include "payload/aggregate_writer.hpp"
#include "payload/fast_unwind.hpp"
#include "payload/hooks.hpp"
#include "payload/lock.hpp"
#include "payload/log.hpp"
#include "payload/objects.hpp"
#include "payload/sink.hpp"
#include "payload/state.hpp"
#include "payload/stack_intern.hpp"
#include "payload/thread_state.hpp"
#include "payload/tracker.hpp"

namespace memray::payload {

namespace {

using namespace memray::format;

constexpr size_t k_block_target = 64 * 1024;  // flush a block at this raw size
constexpr size_t k_raw_capacity = 2u << 20;     // room for one more record past the target
constexpr uint64_t k_flush_interval_ns = 1000000000;  // at most ~1 s lost on SIGKILL
constexpr uint64_t k_sample_interval_ns = 10000000;
constexpr long k_tick_ns = 10000000;
// A pass that took at least this many events from one ring starts paced sleeping (writer_main).
constexpr uint64_t k_pace_events = k_ring_capacity / 8;
constexpr uint64_t k_pace_min_ns = 20000;
constexpr uint64_t k_prefetch_ahead = 8;  // events: --aggregate's live-table slots fetched ahead
constexpr uint64_t k_ring_read_ahead = 16;  // events: ring lines the writer fetches ahead
static_assert(k_raw_capacity <= k_max_block_raw);

struct Cursor {
    ThreadState* state;
    uint64_t pos;
    uint64_t end;
    uint64_t time() const noexcept { return state->ring[pos & k_ring_mask].time; }
};

struct WriterState {
    // Mapped by the first writer_start() and kept for the life of the process (later sessions
    // reuse them). Writer thread only, apart from that first mapping.
    struct Buffers {
        uint8_t* raw = nullptr;     // the block being encoded
        uint8_t* framed = nullptr;  // the block framed (compressed) for the sink
        size_t framed_capacity = 0;
        Cursor* cursors = nullptr;  // one per ring with events in this pass
        uint32_t* heap = nullptr;   // cursor indices, min-heap by time
        size_t cursor_capacity = 0;
    } buffers;

    // One session. writer_start() resets it as a whole before the thread starts, and a forked
    // child does (the thread does not exist there).
    struct Session {
        // --- set by writer_start() before the thread starts, read-only afterwards
        WriterOptions opt;
        Codec codec = Codec::Lz4;
        bool aggregated = false;  // --aggregate: events go to aggregate_writer, not the file
        long page_size = 4096;
        uint32_t tracker_session = 0;
        pthread_t thread{};
        int statm_fd = -1;

        // --- shared: writer_start/finish (the api side), the writer thread, the hot path
        std::atomic<bool> running{false};  // api side
        std::atomic<bool> finish{false};   // api side -> writer thread
        // Published only once a failure is fully handled (tracking off, hooks restored), so a
        // thread that sees memray_payload_active() == 0 through it also sees that;
        // fail_claimed lets exactly one caller handle it.
        std::atomic<bool> failed{false};
        std::atomic<bool> fail_claimed{false};
        // Futex: 0 the writer sleeps until woken or the tick; 1 a wake is posted or the writer
        // paces itself (writer_main); 2 an urgent wake is posted (writer_wake_now).
        std::atomic<uint32_t> wake_word{0};

        // --- writer thread only
        ByteSink block;  // encodes into buffers.raw
        EncoderState enc;
        uint64_t last_flush_ns = 0;
        uint64_t last_sample_ns = 0;
        uint64_t object_generation = 0;
        uint32_t thread_count = 0;
        uint64_t allocations = 0;
        uint64_t deallocations = 0;
        uint64_t last_time_us = 0;
        // Events stamped before this tick get no Time record (the block's last one is less
        // than 1 ms older), so emit_event() need not convert their stamps (encode_time_of()).
        // 0 when unknown: a new block, a new clock slope.
        uint64_t next_time_tick = 0;
        uint32_t raw_blocks_left = 0;  // see flush_block()
        uint64_t pass_most = 0;        // most events the last pass took from one ring
        // The clock line (see "Clock" below).
        uint64_t tick0 = 0;
        uint64_t ns0 = 0;
        uint64_t ns_per_tick_q32 = 0;  // nanoseconds per tick, 32.32 fixed point
    } session;
};
constinit WriterState g_writer;
// The two halves under shorter names (bound at compile time; no code runs for them).
constinit WriterState::Buffers& g_buffers = g_writer.buffers;
constinit WriterState::Session& g_session = g_writer.session;

void* map_memory(size_t bytes) noexcept {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

uint64_t time_us(uint64_t t_ns) noexcept {
    return t_ns > g_session.opt.start_ns ? (t_ns - g_session.opt.start_ns) / 1000 : 0;
}

// --- Clock. Events carry now_ticks() (thread_state.hpp). With the TSC, ticks become
// CLOCK_MONOTONIC nanoseconds by a line through (tick0, ns0), taken at writer start, and
// the latest pair, refreshed every pass; the slope comes from the whole span, so its error
// shrinks as the capture runs and a time is off by about one pair's read jitter (< 1 us).
// Events are merged by their raw ticks (one global, causally consistent order); conversion only
// produces the times written, which emit_event() keeps from going backwards.

// A tick read that later loads cannot pass (rdtscp waits for older instructions; lfence holds
// younger ones back): the watermark must be read before any ring head (see cycle()).
uint64_t writer_ticks() noexcept {
#if defined(__x86_64__)
    if (g_clock_tsc) {
        uint32_t lo, hi;
        asm volatile("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi)::"rcx", "memory");
        return (uint64_t(hi) << 32) | lo;
    }
#endif
    uint64_t t = now_ns();
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return t;
}

// A (ticks, ns) pair read close together: the best of a few tries, ns at the midpoint.
void clock_pair(uint64_t& ticks, uint64_t& ns) noexcept {
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 5; ++i) {
        uint64_t a = now_ns();
        uint64_t t = writer_ticks();
        uint64_t b = now_ns();
        if (b - a < best) {
            best = b - a;
            ticks = t;
            ns = a + (b - a) / 2;
        }
    }
}

void clock_start() noexcept {
    if (g_clock_tsc) clock_pair(g_session.tick0, g_session.ns0);
    g_session.ns_per_tick_q32 = 0;
}

// Called at the start of every pass, before the events it converts were taken.
void clock_refresh() noexcept {
    if (!g_clock_tsc) return;
    uint64_t ticks = 0, ns = 0;
    // A very short capture: wait until the span is long enough for a meaningful slope.
    for (;;) {
        clock_pair(ticks, ns);
        if (ns >= g_session.ns0 + 1000000 && ticks > g_session.tick0) break;
        timespec ts{0, 200000};
        nanosleep(&ts, nullptr);
    }
    // In double: a 128-bit division would pull in libgcc_s, which the payload must not need.
    double slope = double(ns - g_session.ns0) / double(ticks - g_session.tick0);
    g_session.ns_per_tick_q32 = uint64_t(slope * 4294967296.0);
    g_session.next_time_tick = 0;  // computed with the old slope
}

uint64_t ticks_to_ns(uint64_t ticks) noexcept {
    if (!g_clock_tsc) return ticks;
    if (ticks <= g_session.tick0) return g_session.ns0;
    unsigned __int128 q32 = (unsigned __int128)(ticks - g_session.tick0) * g_session.ns_per_tick_q32;
    return g_session.ns0 + uint64_t(q32 >> 32);
}

// A tick no later than the first one that ticks_to_ns() takes to capture time `us` or after
// (0 when the line is not known yet). Early is harmless: emit_event() then converts a few stamps
// it could have skipped.
uint64_t tick_at_or_before(uint64_t us) noexcept {
    uint64_t ns = g_session.opt.start_ns + us * 1000;
    if (!g_clock_tsc) return ns;
    if (g_session.ns_per_tick_q32 == 0 || ns <= g_session.ns0) return 0;
    double ticks = double(ns - g_session.ns0) * 4294967296.0 / double(g_session.ns_per_tick_q32);
    uint64_t span = uint64_t(ticks);
    // Below the rounding of the double (2^-52 relative) and of the fixed-point line.
    uint64_t margin = (span >> 40) + 64;
    return span > margin ? g_session.tick0 + span - margin : 0;
}

void fail(int err) noexcept {
    if (g_session.fail_claimed.exchange(true)) return;
    if (g_session.opt.sink->reconnects())
        log(LogLevel::Info, "%s left (%s); tracking resumes when another viewer connects",
            g_session.opt.sink->describe(), strerror(err));
    else
        log(LogLevel::Error, "error: cannot write %s: %s; tracking stopped",
            g_session.opt.sink->describe(), strerror(err));
    tracker_set_enabled(false);
    uninstall_hooks();
    g_session.failed.store(true);
}

bool write_all(const uint8_t* p, size_t n) noexcept {
    int rc = g_session.opt.sink->write(p, n);
    if (rc < 0) fail(-rc);
    return rc == 0;
}

// A block that lz4 cannot shrink by a fifth (native programs' events: address deltas, little
// repetition) is not worth its compression: on native churn lz4 takes 12-14% off a 64 KiB block
// and compressing every one cost 18% more CPU (paired runs). After one, the next
// k_raw_blocks_after blocks are stored raw, then lz4 is tried again. Python programs' blocks
// shrink 2-3x and are always compressed. Only a block of k_raw_judge_min bytes or more decides:
// lz4 cannot shrink a few dozen bytes (a quiet second's flush, a short last pass), and one such
// block sent a Python program's next block raw (py_alloc: a 9 KB capture became 71 KB).
constexpr uint32_t k_raw_blocks_after = 15;
constexpr size_t k_raw_judge_min = k_block_target / 4;

void flush_block() noexcept {
    size_t raw_len = g_session.block.size();
    if (raw_len && !g_session.failed.load(std::memory_order_relaxed)) {
        Codec codec = g_session.codec;
        if (codec == Codec::Lz4 && g_session.raw_blocks_left > 0) {
            codec = Codec::Raw;
            --g_session.raw_blocks_left;
        }
        size_t framed = frame_block(g_buffers.raw, raw_len, codec, g_buffers.framed,
                                    g_buffers.framed_capacity);
        if (framed == 0) {
            fail(EOVERFLOW);
        } else {
            write_all(g_buffers.framed, framed);
            if (codec == Codec::Lz4 && raw_len >= k_raw_judge_min &&
                framed - k_block_header_size > raw_len - raw_len / 5)
                g_session.raw_blocks_left = k_raw_blocks_after;
        }
    }
    g_session.block.clear();
    g_session.enc.reset();
    g_session.next_time_tick = 0;  // the new block starts with a Time record
    g_session.last_flush_ns = now_ns();
}

// Encodes one unit (a record, or an event with its thread switch and time) atomically: when it
// does not fit, the block is flushed and the unit encoded again into the fresh block. The delta
// state the failed attempt changed needs no undoing: flush_block() resets it for the new block.
template <class F>
void emit(F&& encode) noexcept {
    if (g_session.failed.load(std::memory_order_relaxed)) return;
    for (int attempt = 0; attempt < 2; ++attempt) {
        uint8_t* mark = g_session.block.pos;
        encode();
        if (!g_session.block.overflow) {
            if (g_session.block.size() >= k_block_target) flush_block();
            return;
        }
        g_session.block.pos = mark;
        g_session.block.overflow = false;
        flush_block();
    }
    log(LogLevel::Warning, "warning: a record larger than a block was dropped");
}

void put_raw_bytes(const uint8_t* p, size_t n) noexcept {
    if (g_session.block.room() < n) {
        g_session.block.overflow = true;
        return;
    }
    std::memcpy(g_session.block.pos, p, n);
    g_session.block.pos += n;
}

void emit_object(const LoadedObject& o, void*) noexcept {
    emit([&] {
        encode_object(g_session.block, o.load_bias, o.path, o.build_id,
                      o.build_id ? o.build_id_len : 0,
                      o.segments, o.n_segments);
    });
}

void emit_objects() noexcept {
    uint64_t generation = ++g_session.object_generation;
    emit([&] { encode_objects_reset(g_session.block, generation); });
    for_each_loaded_object(emit_object, nullptr);
}

void sample_memory(uint64_t t_ns) noexcept {
    if (g_session.statm_fd < 0) return;
    char buf[128];
    ssize_t n = pread(g_session.statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return;
    buf[n] = '\0';
    // "size resident shared ...": the second field, in pages.
    const char* p = buf;
    while (*p && *p != ' ') ++p;
    uint64_t pages = 0;
    while (*p == ' ') ++p;
    while (*p >= '0' && *p <= '9') pages = pages * 10 + uint64_t(*p++ - '0');
    uint64_t rss = pages * uint64_t(g_session.page_size);
    uint64_t t = time_us(t_ns);
    if (g_session.aggregated) {
        uint64_t heap = aggregate_heap();
        emit([&] { encode_heap_sample(g_session.block, t, rss, heap); });
    } else {
        emit([&] { encode_memory_sample(g_session.block, t, rss); });
    }
}

void read_comm(long tid, char* out, size_t cap) noexcept {
    out[0] = '\0';
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0) return;
    if (out[n - 1] == '\n') --n;
    out[n] = '\0';
}

// Assigns the state its thread index at first sight in this capture, and emits ThreadInfo then
// and whenever the thread was renamed since.
void announce_thread(ThreadState* s) noexcept {
    if (s->writer_session != g_session.tracker_session) {
        s->writer_session = g_session.tracker_session;
        s->thread_index = ++g_session.thread_count;
        s->name_seq_seen = s->name_seq.load(std::memory_order_acquire) - 1;
    }
    uint32_t seq = s->name_seq.load(std::memory_order_acquire);
    if (seq == s->name_seq_seen) return;
    s->name_seq_seen = seq;
    char name[64];
    {
        LockGuard lock(s->name_lock);
        std::memcpy(name, s->name, sizeof name);
    }
    name[sizeof name - 1] = '\0';
    long tid = s->tid.load(std::memory_order_relaxed);
    if (!name[0]) read_comm(tid, name, sizeof name);
    uint32_t index = s->thread_index;
    emit([&] { encode_thread_info(g_session.block, index, uint64_t(tid), name); });
}

bool ensure_cursor_capacity(size_t n) noexcept {
    if (n <= g_buffers.cursor_capacity) return true;
    size_t cap = g_buffers.cursor_capacity ? g_buffers.cursor_capacity : 64;
    while (cap < n) cap *= 2;
    auto* c = static_cast<Cursor*>(map_memory(cap * sizeof(Cursor)));
    auto* h = static_cast<uint32_t*>(map_memory(cap * sizeof(uint32_t)));
    if (!c || !h) {
        if (c) munmap(c, cap * sizeof(Cursor));
        if (h) munmap(h, cap * sizeof(uint32_t));
        return false;
    }
    if (g_buffers.cursors) {
        munmap(g_buffers.cursors, g_buffers.cursor_capacity * sizeof(Cursor));
        munmap(g_buffers.heap, g_buffers.cursor_capacity * sizeof(uint32_t));
    }
    g_buffers.cursors = c;
    g_buffers.heap = h;
    g_buffers.cursor_capacity = cap;
    return true;
}

void release_ring(Cursor& c) noexcept {
    ThreadState* s = c.state;
    s->tail.store(c.end, std::memory_order_release);
    s->tail_seq.fetch_add(1, std::memory_order_seq_cst);
    if (s->producer_waiting.load(std::memory_order_seq_cst)) {
        futex_wake(&s->tail_seq, 1);
    }
}

void emit_metadata() noexcept {
    MetaView view = metadata_peek();
    const uint8_t* p = view.data;
    const uint8_t* end = view.data + view.len;
    MetaKind kind;
    MetaNode node;
    const uint8_t* code;
    size_t code_len;
    while ((p = metadata_next(p, end, kind, node, code, code_len))) {
        if (kind == MetaKind::Node) {
            emit([&] {
                if (node.kind != FrameKind::Native)
                    encode_python_node(g_session.block, g_session.enc, node.id, node.parent,
                                       node.code_id,
                                       node.offset, node.kind == FrameKind::PythonEntry);
                else
                    encode_native_node(g_session.block, g_session.enc, node.id, node.parent,
                                       node.ip);
            });
        } else {
            emit([&] { put_raw_bytes(code, code_len); });
        }
    }
    if (view.len) metadata_consume(view.len);
}

// The capture time of a stamp. Causally related events are in order (see cycle()); unrelated ones
// may come a little late (a thread preempted between stamping and publishing) and are given the
// latest time so far, so times in the file never go backwards.
uint64_t event_time_us(uint64_t ticks) noexcept {
    uint64_t t = time_us(ticks_to_ns(ticks));
    if (t > g_session.last_time_us) g_session.last_time_us = t;
    else t = g_session.last_time_us;
    return t;
}

// The Time record an event stamped `ticks` needs, if any. Most events come less than a
// millisecond after the block's last Time record and are told apart by one compare with a tick,
// without converting their stamps (a fifth of the writer's encoding time on malloc-heavy Python).
template <class Sink>
void encode_time_of(Sink& sink, uint64_t ticks) noexcept {
    if (ticks < g_session.next_time_tick) return;
    encode_time(sink, g_session.enc, event_time_us(ticks));
    g_session.next_time_tick = tick_at_or_before(g_session.enc.time_us + 1000);
}

// `ahead`: the address of an event a few places later, whose live-table slot --aggregate starts
// fetching now (0: none).
__attribute__((always_inline)) inline void emit_event(ThreadState* s, const RawEvent& e,
                                                   uint64_t ahead) noexcept {
    Allocator kind = Allocator(e.kind);
    uint32_t index = s->thread_index;
    if (is_deallocator(kind)) ++g_session.deallocations;
    else ++g_session.allocations;
    if (g_session.aggregated) {
        aggregate_event(index, kind, e.address, e.size, e.node, event_time_us(e.time), ahead);
        return;
    }
    auto encode = [&](auto& sink) {
        encode_thread_switch(sink, g_session.enc, index);
        encode_time_of(sink, e.time);
        if (is_deallocator(kind)) encode_deallocation(sink, g_session.enc, kind, e.address, e.size);
        else encode_allocation(sink, g_session.enc, kind, e.address, e.size, e.node);
    };
    // Nearly always the block has room for the largest event: encode it without a bounds check
    // per byte (a third of the writer's encoding time on native churn).
    ByteSink& block = g_session.block;
    if (block.room() >= UncheckedSink::k_unchecked_room &&
        !g_session.failed.load(std::memory_order_relaxed)) [[likely]] {
        UncheckedSink fast{block.pos};
        encode(fast);
        block.pos = fast.pos;
        if (block.size() >= k_block_target) flush_block();
        return;
    }
    emit([&] { encode(block); });
}

void emit_location(const AggregateLocationView& v, void* written) noexcept {
    emit([&] {
        encode_aggregate_location(g_session.block, g_session.enc, v.node, v.thread, v.allocator,
                                  v.amounts);
    });
    ++*static_cast<uint64_t*>(written);
}

// --aggregate: the whole location table as of now, then the Checkpoint record that makes it,
// with everything written since the previous one, the capture's state (records.hpp).
void emit_checkpoint() noexcept {
    uint64_t written = 0;
    aggregate_for_each_location(emit_location, &written);
    CheckpointFields c = aggregate_totals();
    c.time_us = time_us(now_ns());
    if (c.time_us < g_session.last_time_us) c.time_us = g_session.last_time_us;
    c.locations = written;
    emit([&] { encode_checkpoint(g_session.block, c); });
}

bool heap_less(uint32_t a, uint32_t b) noexcept {
    return g_buffers.cursors[a].time() < g_buffers.cursors[b].time();
}

void heap_down(size_t n, size_t i) noexcept {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(g_buffers.heap[l], g_buffers.heap[m])) m = l;
        if (r < n && heap_less(g_buffers.heap[r], g_buffers.heap[m])) m = r;
        if (m == i) return;
        uint32_t t = g_buffers.heap[i];
        g_buffers.heap[i] = g_buffers.heap[m];
        g_buffers.heap[m] = t;
        i = m;
    }
}

void maybe_recycle(ThreadState* s) noexcept {
    if (s->status.load(std::memory_order_acquire) != uint32_t(StateStatus::Exited)) return;
    if (s->tail.load(std::memory_order_relaxed) != s->head.load(std::memory_order_acquire))
        return;
    long tid = s->tid.load(std::memory_order_relaxed);
    if (syscall(SYS_tgkill, getpid(), tid, 0) == 0 || errno != ESRCH) return;
    // The owner is gone: nobody produces any more. Writer-owned fields are reset here so a new
    // owner starts clean.
    s->writer_session = 0;
    s->thread_index = 0;
    s->status.store(uint32_t(StateStatus::Free), std::memory_order_release);
}

// The end of the prefix of s's ring in [tail, head) stamped before `watermark` (stamps rise along
// a ring). Usually the whole range: one look at its last event. Otherwise a binary search, so the
// writer does not touch every event twice (here and when it encodes them).
uint64_t taken_before(const ThreadState* s, uint64_t tail, uint64_t head,
                      uint64_t watermark) noexcept {
    if (tail == head || s->ring[(head - 1) & k_ring_mask].time < watermark) return head;
    while (tail < head) {
        uint64_t mid = tail + (head - tail) / 2;
        if (s->ring[mid & k_ring_mask].time < watermark) tail = mid + 1;
        else head = mid;
    }
    return tail;
}

// One pass. Ordering argument: `watermark` is read *before* any ring head. An event stamped
// before the watermark was stamped before that read; anything that happened-before it (e.g. the
// free of the address this malloc returned, which is pushed before the real free runs) was pushed
// before too, so it is visible in its ring now. Events at or after the watermark wait for the
// next pass. Per-thread times are monotonic, so what is taken is a prefix of each ring.
// With the TSC this needs three things: producers stamp with rdtscp, so a stamp follows every
// load before it (thread_state.hpp); the watermark read is fenced, so no head load passes it
// (writer_ticks()); and the kernel found the TSCs synchronized (tracker.cpp, tsc_usable()).
size_t cycle(bool final) noexcept {
    uint64_t now = now_ns();
    clock_refresh();
    if (tracker_take_objects_changed()) emit_objects();
    uint64_t watermark = final ? UINT64_MAX : writer_ticks();

    size_t n_states = 0;
    for (ThreadState* s = thread_list(); s; s = s->next) ++n_states;
    bool have_cursors = ensure_cursor_capacity(n_states);
    size_t n = 0;
    uint64_t most = 0;
    for (ThreadState* s = thread_list(); s; s = s->next) {
        if (s->status.load(std::memory_order_acquire) == uint32_t(StateStatus::Free)) continue;
        uint64_t tail = s->tail.load(std::memory_order_relaxed);
        uint64_t head = s->head.load(std::memory_order_acquire);
        uint64_t end = final ? head : taken_before(s, tail, head, watermark);
        if (end == tail) {
            if (s->writer_session == g_session.tracker_session) announce_thread(s);  // renames
            maybe_recycle(s);
            continue;
        }
        if (!have_cursors || n >= g_buffers.cursor_capacity) break;  // next pass takes the rest
        g_buffers.cursors[n++] = Cursor{s, tail, end};
        if (end - tail > most) most = end - tail;
    }
    g_session.pass_most = most;

    // Metadata after the rings: every node those events name is in it.
    emit_metadata();

    if (g_session.failed.load(std::memory_order_relaxed)) {
        for (size_t i = 0; i < n; ++i) release_ring(g_buffers.cursors[i]);  // keep producers moving
    } else {
        for (size_t i = 0; i < n; ++i) {
            announce_thread(g_buffers.cursors[i].state);
            g_buffers.heap[i] = uint32_t(i);
        }
        size_t heap_n = n;
        for (size_t i = heap_n / 2; i-- > 0;) heap_down(heap_n, i);
        auto ahead = [](const Cursor& c) -> uint64_t {
            if (!g_session.aggregated || c.pos + k_prefetch_ahead >= c.end) return 0;
            return c.state->ring[(c.pos + k_prefetch_ahead) & k_ring_mask].address;
        };
        while (heap_n > 1) {
            Cursor& c = g_buffers.cursors[g_buffers.heap[0]];
            __builtin_prefetch(&c.state->ring[(c.pos + k_ring_read_ahead) & k_ring_mask]);
            emit_event(c.state, c.state->ring[c.pos & k_ring_mask], ahead(c));
            if (++c.pos == c.end) {
                release_ring(c);
                g_buffers.heap[0] = g_buffers.heap[--heap_n];
            }
            heap_down(heap_n, 0);
        }
        if (heap_n == 1) {  // one ring left (often the only one): no merging
            Cursor& c = g_buffers.cursors[g_buffers.heap[0]];
            for (; c.pos != c.end; ++c.pos) {
                // The ring's lines were written on the producer's CPU: ask for them early.
                __builtin_prefetch(&c.state->ring[(c.pos + k_ring_read_ahead) & k_ring_mask]);
                emit_event(c.state, c.state->ring[c.pos & k_ring_mask], ahead(c));
            }
            release_ring(c);
        }
    }

    if (final || now - g_session.last_sample_ns >= k_sample_interval_ns) {
        g_session.last_sample_ns = now;
        sample_memory(watermark == UINT64_MAX ? now_ns() : ticks_to_ns(watermark));
    }
    // Not `now - last_flush_ns`: a block that filled up during this pass was flushed after
    // `now` was read, and the difference wrapped round (every such pass flushed its partial
    // block too: half the blocks of a busy capture were small ones).
    if (final || now >= g_session.last_flush_ns + k_flush_interval_ns) {
        // The final checkpoint comes once, from writer_main(), after the last pass.
        if (g_session.aggregated && !final) emit_checkpoint();
        flush_block();
    }
    return n;
}

void* writer_main(void*) noexcept {
    // Nothing the writer does is recorded: its own allocations (libc, /proc reads) included.
    t_in_tracker = true;
    prctl(PR_SET_NAME, "memray-writer", 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // paced sleeps (below) are short: no 50 us slack
    emit_objects();
    // While the program allocates fast, the writer comes back on a timer sized so that the
    // busiest ring is about a quarter full, and keeps the wake word at 1 meanwhile: a producer
    // crossing half full then makes no futex call. Waking a sleeping thread cost the producer
    // ~15 us of syscall and IPI on these VMs (5% of a --trace-python-allocators run). A ring
    // three quarters full still wakes it at once (tracker.cpp, ring_filling()).
    bool paced = false;
    bool again = false;  // just left pacing: one more pass before sleeping on the word
    uint64_t pace_ns = k_pace_min_ns;
    uint64_t last_pass_ns = now_ns();
    while (!g_session.finish.load(std::memory_order_acquire)) {
        if (paced) {
            if (g_session.wake_word.exchange(1, std::memory_order_acq_rel) != 2)
                futex_wait(&g_session.wake_word, 1, long(pace_ns));
            g_session.wake_word.store(1, std::memory_order_release);
        } else {
            if (!again && g_session.wake_word.load(std::memory_order_acquire) == 0)
                futex_wait(&g_session.wake_word, 0, k_tick_ns);
            g_session.wake_word.store(0, std::memory_order_release);
        }
        uint64_t start = now_ns();
        cycle(false);
        uint64_t most = g_session.pass_most;
        again = paced && most < k_pace_events;
        paced = most >= k_pace_events;
        if (paced) {
            // The busiest ring's rate since the previous pass, for a quarter of a ring.
            uint64_t quarter = (start - last_pass_ns) * (k_ring_capacity / 4) / most;
            pace_ns = quarter < k_pace_min_ns ? k_pace_min_ns
                      : quarter > uint64_t(k_tick_ns) ? uint64_t(k_tick_ns) : quarter;
        }
        last_pass_ns = start;
    }
    // Until a pass finds nothing: a pass takes at most one cursor per state it counted.
    while (cycle(true) != 0) {
    }
    if (!g_session.failed.load()) {
        if (g_session.aggregated) emit_checkpoint();
        TrailerFields t;
        t.end_time_us = time_us(now_ns());
        if (t.end_time_us < g_session.last_time_us) t.end_time_us = g_session.last_time_us;
        t.allocations = g_session.allocations;
        t.deallocations = g_session.deallocations;
        t.threads = g_session.thread_count;
        t.codes = intern_code_count();
        t.nodes = intern_node_count();
        emit([&] { encode_trailer(g_session.block, t); });
        flush_block();
    }
    return nullptr;
}

}  // namespace

void writer_wake() noexcept {
    if (g_session.wake_word.load(std::memory_order_relaxed) == 0 &&
        g_session.wake_word.exchange(1, std::memory_order_acq_rel) == 0)
        futex_wake(&g_session.wake_word, 1);
}

void writer_wake_now() noexcept {
    if (g_session.wake_word.exchange(2, std::memory_order_acq_rel) != 2)
        futex_wake(&g_session.wake_word, 1);
}

int writer_start(const WriterOptions& options, char* err, size_t err_len) noexcept {
    if (g_session.running.load()) {
        snprintf(err, err_len, "the writer is already running");
        return -EBUSY;
    }
    if (!options.sink) {
        snprintf(err, err_len, "no output given to the writer");
        return -EINVAL;
    }
    if (!g_buffers.raw) {
        g_buffers.framed_capacity = max_framed_size(k_raw_capacity);
        g_buffers.raw = static_cast<uint8_t*>(map_memory(k_raw_capacity));
        g_buffers.framed = static_cast<uint8_t*>(map_memory(g_buffers.framed_capacity));
        if (!g_buffers.raw || !g_buffers.framed) {
            snprintf(err, err_len, "cannot map writer buffers: %s", strerror(errno));
            return -ENOMEM;
        }
    }
    reset_state(g_session);
    g_session.opt = options;
    g_session.block = ByteSink(g_buffers.raw, k_raw_capacity);
    g_session.codec = options.compress ? Codec::Lz4 : Codec::Raw;
    g_session.aggregated = (options.flags & k_flag_aggregated) != 0;
    if (g_session.aggregated && !aggregate_start()) {
        snprintf(err, err_len, "cannot map the tables of --aggregate: %s", strerror(errno));
        return -ENOMEM;
    }
    g_session.page_size = sysconf(_SC_PAGESIZE);
    g_session.tracker_session = tracker_session();

    HeaderFields h;
    h.flags = options.flags;
    h.pid = options.pid;
    h.start_time_unix_ms = options.start_unix_ms;
    h.command_line = options.command_line;
    h.python_version = options.python_version;
    h.executable = options.executable;
    h.python_allocator = options.python_allocator;
    encode_file_header(g_session.block, h);
    if (g_session.block.overflow) {
        snprintf(err, err_len, "file header too large");
        aggregate_release();
        return -EOVERFLOW;
    }
    // Written here rather than by the thread, so that a path that cannot be written to is an
    // error of start.
    int written = options.sink->write(g_buffers.raw, g_session.block.size());
    if (written < 0) {
        snprintf(err, err_len, "cannot write %s: %s", options.sink->describe(), strerror(-written));
        aggregate_release();
        return written;
    }
    g_session.block.clear();
    clock_start();
    g_session.last_flush_ns = g_session.last_sample_ns = now_ns();
    g_session.statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

    // The writer must not run the program's signal handlers.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g_session.thread, nullptr, writer_main, nullptr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the writer thread: %s", strerror(rc));
        if (g_session.statm_fd >= 0) close(g_session.statm_fd);
        g_session.statm_fd = -1;
        aggregate_release();
        return -rc;
    }
    // Named from here too, so the thread is recognisable as soon as start returns.
    pthread_setname_np(g_session.thread, "memray-writer");
    g_session.running.store(true);
    return 0;
}

void writer_finish() noexcept {
    fast_unwind_report();
    if (!g_session.running.load()) return;
    g_session.finish.store(true, std::memory_order_release);
    writer_wake_now();
    pthread_join(g_session.thread, nullptr);
    if (g_session.aggregated) aggregate_release();
    g_session.opt.sink->finish();
    if (g_session.statm_fd >= 0) close(g_session.statm_fd);
    g_session.statm_fd = -1;
    g_session.running.store(false);
}

bool writer_failed() noexcept { return g_session.failed.load(std::memory_order_acquire); }
bool writer_running() noexcept { return g_session.running.load(std::memory_order_relaxed); }

void writer_after_fork_child() noexcept {
    if (g_session.running.load(std::memory_order_relaxed)) {
        g_session.opt.sink->abandon_in_child();
        if (g_session.statm_fd >= 0) close(g_session.statm_fd);
        if (g_session.aggregated) aggregate_release();
    }
    reset_state(g_session);
}

}  // namespace memray::payload
