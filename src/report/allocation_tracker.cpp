#include "report/allocation_tracker.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <iterator>
#include <memory>
#include <thread>

namespace memray::report {

void AllocationTracker::on_mmap(const format::Event& e) {
    ++m_allocations;
    m_total_bytes += e.size;
    m_by_allocator[uint8_t(format::Allocator::Mmap)] += 1;
    count_size(e.size);
    if (e.size == 0) return;
    // A mapping placed over live ones (MAP_FIXED) replaces them.
    on_munmap(e.address, e.size);
    m_mmaps.emplace(e.address, MmapRange{e.address + e.size, e.node});
    ++m_mmap_count;
    acquire(e.node, e.size);
}

// The address was handed out again without a recorded free (the free happened where we do not
// see it): the old block is gone.
void AllocationTracker::on_reused_address(uint64_t address, const Live& old) {
    uint64_t size = old.size;
    if (old.size == k_big_size) m_big_sizes.erase(address, &size);
    release(old.node, size, 1);
}

void AllocationTracker::on_munmap(uint64_t address, uint64_t size) {
    if (size == 0 || m_mmaps.empty()) return;
    uint64_t end = address + size;
    auto it = m_mmaps.upper_bound(address);
    if (it != m_mmaps.begin()) --it;
    while (it != m_mmaps.end() && it->first < end) {
        uint64_t r_start = it->first;
        MmapRange r = it->second;
        if (r.end <= address) {
            ++it;
            continue;
        }
        uint64_t cut_start = std::max(r_start, address);
        uint64_t cut_end = std::min(r.end, end);
        bool keep_left = r_start < cut_start;
        bool keep_right = cut_end < r.end;
        // Each remaining piece counts as one allocation, as memray's interval tree does.
        int64_t count_delta = int64_t(keep_left) + int64_t(keep_right) - 1;
        it = m_mmaps.erase(it);
        if (keep_left) m_mmaps.emplace(r_start, MmapRange{cut_start, r.node});
        if (keep_right) it = std::next(m_mmaps.emplace(cut_end, MmapRange{r.end, r.node}).first);
        m_mmap_count += uint64_t(count_delta);
        NodeStats& n = node_for_update(r.node);
        n.live_bytes -= cut_end - cut_start;
        n.live_count += uint64_t(count_delta);
        m_heap -= cut_end - cut_start;
    }
}

std::vector<std::pair<uint64_t, uint64_t>> AllocationTracker::count_by_size() const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (uint64_t size = 0; size < k_dense_sizes; ++size)
        if (m_by_small_size[size]) out.emplace_back(size, m_by_small_size[size]);
    m_by_size.for_each([&](uint64_t size, const uint64_t& count) { out.emplace_back(size, count); });
    std::sort(out.begin(), out.end());
    return out;
}

namespace {

// Feeds events to the tracker in order, prefetching ahead: an event is prefetched when it arrives
// and processed k_far events later; the last k_far events wait at the front of `m_buf` for the
// next run.
class Feeder {
  public:
    static constexpr size_t k_far = AllocationTracker::k_prefetch_ahead;
    static constexpr size_t k_run = 512;  // events taken from the reader at once

    explicit Feeder(AllocationTracker& tracker) : m_tracker(tracker) {}

    // Where the next run of at most k_run events goes; then call take(n).
    format::Event* space() { return m_buf + m_waiting; }
    void take(size_t n) {
        size_t total = m_waiting + n;
        if (total <= k_far) {
            for (size_t i = m_waiting; i < total; ++i) m_tracker.prefetch(m_buf[i]);
            m_waiting = total;
            return;
        }
        for (size_t i = m_waiting; i < k_far; ++i) m_tracker.prefetch(m_buf[i]);
        size_t ready = total - k_far;
        for (size_t i = 0; i < ready; ++i) {
            m_tracker.prefetch(m_buf[i + k_far]);
            m_tracker.on_event(m_buf[i]);
        }
        std::copy(m_buf + ready, m_buf + total, m_buf);
        m_waiting = k_far;
    }
    void finish() {
        for (size_t i = 0; i < m_waiting; ++i) m_tracker.on_event(m_buf[i]);
        m_waiting = 0;
    }

  private:
    AllocationTracker& m_tracker;
    format::Event m_buf[k_far + k_run];
    size_t m_waiting = 0;  // m_buf[0, m_waiting): arrived and prefetched, not processed yet
};

// Decodes up to `max` events (fewer only at the end); returns how many and sets `end`.
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
        if (item == format::Reader::Item::Event) out[n++] = reader.event();
    }
    return n;
}

uint64_t track_single_thread(format::Reader& reader, AllocationTracker& tracker) {
    auto feeder = std::make_unique<Feeder>(tracker);
    uint64_t events = 0;
    bool end = false;
    while (!end) {
        size_t n = decode_run(reader, feeder->space(), Feeder::k_run, end);
        feeder->take(n);
        events += n;
    }
    feeder->finish();
    return events;
}

// Decoding (read, checksum, decompress, parse) and aggregation each take about half the time of
// a pass, so with a second core the reader runs on its own thread, handing batches of decoded
// events through a small ring. The aggregation order is the file order, as single-threaded.
uint64_t track_two_threads(format::Reader& reader, AllocationTracker& tracker) {
    // 4 x 80 KiB: small enough to pass between the cores through the shared cache.
    constexpr size_t k_slots = 4;
    constexpr size_t k_batch = 4 * Feeder::k_run;
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
                b.n = decode_run(reader, b.events, k_batch, b.end);
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

    auto feeder = std::make_unique<Feeder>(tracker);
    uint64_t events = 0;
    try {
        for (uint64_t seq = 0;; ++seq) {
            for (uint64_t p = produced.load(std::memory_order_acquire); p == seq;
                 p = produced.load(std::memory_order_acquire))
                produced.wait(p, std::memory_order_acquire);
            Batch& b = ring[seq % k_slots];
            bool end = b.end;
            for (size_t i = 0; i < b.n; i += Feeder::k_run) {
                size_t k = std::min(Feeder::k_run, b.n - i);
                std::copy(b.events + i, b.events + i + k, feeder->space());
                feeder->take(k);
            }
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

}  // namespace

uint64_t track_capture(format::Reader& reader, AllocationTracker& tracker, TrackThreads threads) {
    // Small captures are not worth a thread.
    constexpr uint64_t k_threaded_min_bytes = 8 << 20;
    if (threads == TrackThreads::Auto)
        threads = reader.file_size() >= k_threaded_min_bytes &&
                          std::thread::hardware_concurrency() >= 2
                      ? TrackThreads::Two
                      : TrackThreads::One;
    if (threads == TrackThreads::Two) return track_two_threads(reader, tracker);
    return track_single_thread(reader, tracker);
}

}  // namespace memray::report
