// Open-addressing hash map from a non-zero 64-bit key to a small trivially copyable value.
//
// Why our own: std::unordered_map allocates a node per entry and chases a pointer per lookup, which
// is most of the cost of reading a capture (memray's reader spends its time there). Keys here are
// addresses and sizes: never 0 for addresses, so 0 marks an empty slot; a 0 key (size 0) is kept
// in a side slot. Linear probing with backward-shift deletion keeps probes short without
// tombstones, so a map that sees billions of insert/erase pairs never degrades. The load stays
// at most 1/2: a probe that ends at the first or second slot keeps its loop branches predictable,
// which measured faster than the denser 3/4 on captures whose live set outgrows the caches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>

namespace memray::report {

template <typename V>
class FlatMap {
    static_assert(std::is_trivially_copyable_v<V>);

  public:
    struct Slot {
        uint64_t key;
        V value;
    };

    FlatMap() { rehash(16); }
    ~FlatMap() { std::free(m_slots); }
    FlatMap(const FlatMap&) = delete;
    FlatMap& operator=(const FlatMap&) = delete;

    size_t size() const { return m_size + (m_has_zero ? 1 : 0); }
    size_t capacity() const { return m_mask + 1; }

    // Returns the value for `key`, default-constructed and inserted when absent.
    V& operator[](uint64_t key) {
        if (key == 0) [[unlikely]] {
            if (!m_has_zero) {
                m_has_zero = true;
                m_zero = V{};
            }
            return m_zero;
        }
        size_t i = index_of(key);
        for (;;) {
            Slot& s = m_slots[i];
            if (s.key == key) return s.value;
            if (s.key == 0) {
                if ((m_size + 1) * 2 > capacity()) [[unlikely]] {
                    grow();
                    return (*this)[key];
                }
                s.key = key;
                s.value = V{};
                ++m_size;
                return s.value;
            }
            i = (i + 1) & m_mask;
        }
    }

    // Inserts or overwrites. Returns true when the key was absent.
    bool insert(uint64_t key, const V& value, V* previous = nullptr) {
        if (key == 0) [[unlikely]] {
            bool fresh = !m_has_zero;
            if (!fresh && previous) *previous = m_zero;
            m_has_zero = true;
            m_zero = value;
            return fresh;
        }
        size_t i = index_of(key);
        for (;;) {
            Slot& s = m_slots[i];
            if (s.key == key) {
                if (previous) *previous = s.value;
                s.value = value;
                return false;
            }
            if (s.key == 0) {
                if ((m_size + 1) * 2 > capacity()) [[unlikely]] {
                    grow();
                    return insert(key, value, previous);
                }
                s.key = key;
                s.value = value;
                ++m_size;
                return true;
            }
            i = (i + 1) & m_mask;
        }
    }

    // Hints the CPU to fetch the cache line where a lookup of `key` starts. (A read prefetch:
    // the write hint needs PREFETCHW, which baseline x86-64 lacks. always_inline: GCC 12 deems
    // a function holding only prefetches side-effect free and deletes calls to it.)
    __attribute__((always_inline)) void prefetch(uint64_t key) const {
        __builtin_prefetch(&m_slots[index_of(key)]);
    }

    V* find(uint64_t key) {
        if (key == 0) [[unlikely]]
            return m_has_zero ? &m_zero : nullptr;
        size_t i = index_of(key);
        for (;;) {
            Slot& s = m_slots[i];
            if (s.key == key) return &s.value;
            if (s.key == 0) return nullptr;
            i = (i + 1) & m_mask;
        }
    }

    // Removes `key`; copies its value to `out` when found.
    bool erase(uint64_t key, V* out = nullptr) {
        if (key == 0) [[unlikely]] {
            if (!m_has_zero) return false;
            if (out) *out = m_zero;
            m_has_zero = false;
            return true;
        }
        size_t i = index_of(key);
        for (;;) {
            Slot& s = m_slots[i];
            if (s.key == key) break;
            if (s.key == 0) return false;
            i = (i + 1) & m_mask;
        }
        if (out) *out = m_slots[i].value;
        // Backward shift: pull later members of the probe run into the hole so that lookups
        // never need tombstones.
        size_t hole = i;
        size_t j = i;
        for (;;) {
            j = (j + 1) & m_mask;
            Slot& s = m_slots[j];
            if (s.key == 0) break;
            size_t home = index_of(s.key);
            // Move s into the hole unless its home lies cyclically in (hole, j].
            bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (!stays) {
                m_slots[hole] = s;
                hole = j;
            }
        }
        m_slots[hole].key = 0;
        --m_size;
        return true;
    }

    // Calls f(key, value&) for every entry, in no particular order.
    template <typename F>
    void for_each(F&& f) {
        if (m_has_zero) f(uint64_t(0), m_zero);
        for (size_t i = 0; i <= m_mask; ++i)
            if (m_slots[i].key != 0) f(m_slots[i].key, m_slots[i].value);
    }

    template <typename F>
    void for_each(F&& f) const {
        if (m_has_zero) f(uint64_t(0), m_zero);
        for (size_t i = 0; i <= m_mask; ++i)
            if (m_slots[i].key != 0) f(m_slots[i].key, m_slots[i].value);
    }

    void clear() {
        for (size_t i = 0; i <= m_mask; ++i) m_slots[i].key = 0;
        m_size = 0;
        m_has_zero = false;
    }

  private:
    size_t index_of(uint64_t key) const {
        // Fibonacci hashing: addresses are 16-byte aligned and sizes small, so their low bits
        // carry little entropy; the top bits of the product mix all of them.
        return size_t((key * 0x9E3779B97F4A7C15ull) >> m_shift);
    }

    void rehash(size_t cap) {
        Slot* old = m_slots;
        size_t old_cap = old ? m_mask + 1 : 0;
        m_slots = static_cast<Slot*>(std::calloc(cap, sizeof(Slot)));
        if (!m_slots) throw std::bad_alloc();
        m_mask = cap - 1;
        m_shift = 64 - unsigned(__builtin_ctzll(cap));
        m_size = 0;
        for (size_t i = 0; i < old_cap; ++i) {
            if (old[i].key == 0) continue;
            size_t j = index_of(old[i].key);
            while (m_slots[j].key != 0) j = (j + 1) & m_mask;
            m_slots[j] = old[i];
            ++m_size;
        }
        std::free(old);
    }
    void grow() { rehash(capacity() * 2); }

    Slot* m_slots = nullptr;
    size_t m_mask = 0;
    unsigned m_shift = 64;
    size_t m_size = 0;
    bool m_has_zero = false;
    V m_zero{};
};

}  // namespace memray::report
