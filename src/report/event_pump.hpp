// Feeds a capture's events, in file order, to an aggregator ("sink"), with the decoding on a
// second thread when that pays. Shared by AllocationTracker (summary, stats) and the snapshot
// builder (flamegraph, table, tree, transform): one place for the batching, prefetching and
// hand-over between threads.
//
// A Sink has `prefetch(const Event&)` (start fetching what on_event will touch) and
// `on_event(const Event&)`. A Transform `(Event* events, size_t n)` runs on each decoded batch on
// the decoding thread, before the sink sees it: per-event work that needs no aggregator state
// (e.g. naming an event's location) goes there, which splits the work between the two cores.
// With Samples, memory samples are handed to the sink in order as events of kind
// k_sample_marker (address = RSS, time_us = sample time).
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <thread>

#include "format/reader.hpp"
#include "report/allocation_tracker.hpp"

namespace memray::report {

inline constexpr format::Allocator k_sample_marker = format::Allocator(0);

namespace pump_detail {

// Feeds events to the sink in order, prefetching ahead: an event is prefetched when it arrives
// and processed k_far events later; the last k_far events wait at the front of `m_buf` for the
// next run.
template <typename Sink>
class Feeder {
  public:
    static constexpr size_t k_far = AllocationTracker::k_prefetch_ahead;
    static constexpr size_t k_run = 512;  // events taken from the reader at once

    explicit Feeder(Sink& sink) : m_sink(sink) {}

    // Where the next run of at most k_run events goes; then call take(n).
    format::Event* space() { return m_buf + m_waiting; }
    void take(size_t n) {
        size_t total = m_waiting + n;
        if (total <= k_far) {
            for (size_t i = m_waiting; i < total; ++i) m_sink.prefetch(m_buf[i]);
            m_waiting = total;
            return;
        }
        for (size_t i = m_waiting; i < k_far; ++i) m_sink.prefetch(m_buf[i]);
        size_t ready = total - k_far;
        for (size_t i = 0; i < ready; ++i) {
            m_sink.prefetch(m_buf[i + k_far]);
            m_sink.on_event(m_buf[i]);
        }
        std::copy(m_buf + ready, m_buf + total, m_buf);
        m_waiting = k_far;
    }
    // The same for events that stay where they are (a decoded batch): only the last k_far are
    // copied, to wait for the next call.
    void feed(const format::Event* events, size_t n) {
        // S = m_buf[0, m_waiting) followed by events[0, n); S[i] for i < m_waiting is prefetched.
        const size_t m = m_waiting;
        const size_t total = m + n;
        auto at = [&](size_t i) -> const format::Event& {
            return i < m ? m_buf[i] : events[i - m];
        };
        for (size_t i = m; i < std::min(total, k_far); ++i) m_sink.prefetch(at(i));
        if (total <= k_far) {
            std::copy(events, events + n, m_buf + m);
            m_waiting = total;
            return;
        }
        const size_t ready = total - k_far;
        size_t i = 0;
        for (; i < std::min(ready, m); ++i) {  // the waiting ones first
            m_sink.prefetch(at(i + k_far));
            m_sink.on_event(m_buf[i]);
        }
        if (i < ready) {  // then i == m: the rest comes from `events`
            const format::Event* rest = events;
            for (size_t j = 0, end = ready - m; j < end; ++j) {
                m_sink.prefetch(rest[j + k_far]);
                m_sink.on_event(rest[j]);
            }
        }
        // The last k_far of S wait; they may overlap what m_buf holds, so go through a copy.
        format::Event tail[k_far];
        for (size_t k = 0; k < k_far; ++k) tail[k] = at(ready + k);
        std::copy(tail, tail + k_far, m_buf);
        m_waiting = k_far;
    }
    void finish() {
        for (size_t i = 0; i < m_waiting; ++i) m_sink.on_event(m_buf[i]);
        m_waiting = 0;
    }

  private:
    Sink& m_sink;
    format::Event m_buf[k_far + k_run];
    size_t m_waiting = 0;  // m_buf[0, m_waiting): arrived and prefetched, not processed yet
};

// Decodes up to `max` events (fewer only at the end); returns how many and sets `end`.
template <bool Samples>
size_t decode_run(format::Reader& reader, format::Event* out, size_t max, bool& end) {
    size_t n = 0;
    while (n < max) {
        size_t k = reader.next_events(out + n, max - n);
        if (k != 0) {
            n += k;
            continue;
        }
        auto item = reader.next();
        if (item == format::Reader::Item::End) {
            end = true;
            break;
        }
        if (item == format::Reader::Item::Event) {
            out[n++] = reader.event();
        } else if (Samples) {
            format::Event& e = out[n++];
            e = format::Event{};
            e.allocator = k_sample_marker;
            e.address = reader.sample().rss;
            e.time_us = reader.sample().time_us;
        }
    }
    return n;
}

template <bool Samples, typename Sink, typename Transform>
uint64_t pump_single_thread(format::Reader& reader, Sink& sink, Transform& transform) {
    auto feeder = std::make_unique<Feeder<Sink>>(sink);
    uint64_t events = 0;
    bool end = false;
    while (!end) {
        format::Event* space = feeder->space();
        size_t n = decode_run<Samples>(reader, space, Feeder<Sink>::k_run, end);
        transform(space, n);
        feeder->take(n);
        events += n;
    }
    feeder->finish();
    return events;
}

// Decoding (read, checksum, decompress, parse) and aggregation each take about half the time of
// a pass, so with a second core the reader runs on its own thread, handing batches of decoded
// events through a small ring. The aggregation order is the file order, as single-threaded.
template <bool Samples, typename Sink, typename Transform>
uint64_t pump_two_threads(format::Reader& reader, Sink& sink, Transform& transform) {
    using FeederT = Feeder<Sink>;
    // 4 x 320 KiB (8192 events of 40 bytes): big enough that handing a batch over (a futex
    // wake and wait when one side is ahead) is rare, small enough to stay in the shared cache.
    // bench/bench.py's stats line: 2048-event batches spent ~12% of the CPU in futex/yield.
    constexpr size_t k_slots = 4;
    constexpr size_t k_batch = 16 * FeederT::k_run;
    struct Batch {
        format::Event events[k_batch];
        size_t n = 0;
        bool end = false;
    };
    auto ring = std::make_unique<Batch[]>(k_slots);
    std::atomic<uint64_t> produced{0}, consumed{0};
    std::atomic<bool> cancel{false};
    std::exception_ptr error;

    std::thread decoder([&] {
        try {
            for (uint64_t seq = 0;; ++seq) {
                if (cancel.load(std::memory_order_relaxed)) return;
                for (uint64_t c = consumed.load(std::memory_order_acquire); seq - c >= k_slots;
                     c = consumed.load(std::memory_order_acquire)) {
                    if (cancel.load(std::memory_order_relaxed)) return;
                    consumed.wait(c, std::memory_order_acquire);
                }
                Batch& b = ring[seq % k_slots];
                b.end = false;
                b.n = decode_run<Samples>(reader, b.events, k_batch, b.end);
                transform(b.events, b.n);
                produced.store(seq + 1, std::memory_order_release);
                produced.notify_one();
                if (b.end) return;
            }
        } catch (...) {
            error = std::current_exception();
        }
        // Wakes the consumer with an end marker in the slot that was being filled.
        uint64_t seq = produced.load(std::memory_order_relaxed);
        ring[seq % k_slots].n = 0;
        ring[seq % k_slots].end = true;
        produced.store(seq + 1, std::memory_order_release);
        produced.notify_one();
    });

    auto feeder = std::make_unique<FeederT>(sink);
    uint64_t events = 0;
    try {
        for (uint64_t seq = 0;; ++seq) {
            for (uint64_t p = produced.load(std::memory_order_acquire); p == seq;
                 p = produced.load(std::memory_order_acquire))
                produced.wait(p, std::memory_order_acquire);
            Batch& b = ring[seq % k_slots];
            bool end = b.end;
            feeder->feed(b.events, b.n);
            events += b.n;
            consumed.store(seq + 1, std::memory_order_release);
            consumed.notify_one();
            if (end) break;
        }
    } catch (...) {  // e.g. bad_alloc: stop the decoder before unwinding past its thread
        cancel.store(true);
        consumed.fetch_add(1);
        consumed.notify_one();
        decoder.join();
        throw;
    }
    decoder.join();
    if (error) std::rethrow_exception(error);
    feeder->finish();
    return events;
}

}  // namespace pump_detail

struct NoTransform {
    void operator()(format::Event*, size_t) const {}
};

// Reads every event (and with Samples every memory sample) of `reader` into `sink`. Returns the
// number of items handed over.
template <bool Samples = false, typename Sink, typename Transform = NoTransform>
uint64_t pump_events(format::Reader& reader, Sink& sink, TrackThreads threads = TrackThreads::Auto,
                     Transform transform = {}) {
    // Small captures are not worth a thread.
    constexpr uint64_t k_threaded_min_bytes = 8 << 20;
    if (threads == TrackThreads::Auto)
        threads = reader.file_size() >= k_threaded_min_bytes &&
                          std::thread::hardware_concurrency() >= 2
                      ? TrackThreads::Two
                      : TrackThreads::One;
    if (threads == TrackThreads::Two)
        return pump_detail::pump_two_threads<Samples>(reader, sink, transform);
    return pump_detail::pump_single_thread<Samples>(reader, sink, transform);
}

}  // namespace memray::report
