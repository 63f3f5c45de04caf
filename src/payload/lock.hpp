// The payload's locks and the one guard that takes them. Both lock types are constant-initialized
// (usable in globals that hooks may reach before any constructor ran) and can be reset in a forked
// child, where the thread that held one does not exist.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>

namespace memray::payload {

// A pthread mutex: for cold paths that may sleep while holding it (start/stop, GOT patching).
class Mutex {
  public:
    enum class Kind { Normal, Recursive };
    constexpr explicit Mutex(Kind kind = Kind::Normal) noexcept
        : m_kind(kind), m_mutex(initial(kind)) {}
    Mutex(const Mutex&) = delete;
    Mutex& operator=(const Mutex&) = delete;
    void lock() noexcept { pthread_mutex_lock(&m_mutex); }
    void unlock() noexcept { pthread_mutex_unlock(&m_mutex); }
    void reset_in_child() noexcept { m_mutex = initial(m_kind); }

  private:
    static constexpr pthread_mutex_t initial(Kind kind) noexcept {
        return kind == Kind::Recursive ? pthread_mutex_t PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP
                                       : pthread_mutex_t PTHREAD_MUTEX_INITIALIZER;
    }
    Kind m_kind;
    pthread_mutex_t m_mutex;
};

// A one-byte spinlock for sections of a few dozen instructions that threads of the program may
// enter (a new stack node, a thread's name): no system call unless it is contended for long.
class SpinLock {
  public:
    constexpr SpinLock() noexcept = default;
    SpinLock(const SpinLock&) = delete;
    SpinLock& operator=(const SpinLock&) = delete;
    void lock() noexcept {
        for (unsigned spins = 0;;) {
            if (!m_locked.exchange(true, std::memory_order_acquire)) return;
            while (m_locked.load(std::memory_order_relaxed)) {
                if (++spins > 64) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
                else __builtin_ia32_pause();
#endif
            }
        }
    }
    void unlock() noexcept { m_locked.store(false, std::memory_order_release); }
    void reset_in_child() noexcept { m_locked.store(false, std::memory_order_relaxed); }

  private:
    std::atomic<bool> m_locked{false};
};

// Holds `lock` for the scope: for Mutex, SpinLock, or anything with lock()/unlock().
template <class Lock>
class [[nodiscard]] LockGuard {
  public:
    explicit LockGuard(Lock& lock) noexcept : m_lock(lock) { m_lock.lock(); }
    ~LockGuard() { m_lock.unlock(); }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;

  private:
    Lock& m_lock;
};

}  // namespace memray::payload
