// The payload's attach protocol, end to end inside this process: the test plays the CLI (through
// src/inject/payload_control, which reads and writes the status with process_vm_readv/writev and
// hands the descriptor over with pidfd_getfd + SCM_RIGHTS) and the target at once (the payload is
// dlopen'ed here and tracks this process's own allocations).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "format/reader.hpp"
#include "inject/payload_control.hpp"
#include "payload/api.hpp"

using namespace memray;
using namespace std::chrono_literals;

namespace {

struct Payload {
    int (*start_async)(const char*) = nullptr;
    int (*active)() = nullptr;
    memray_payload_status_t* status = nullptr;
};

const Payload& payload() {
    static Payload p = [] {
        Payload out;
        void* h = dlopen(MEMRAY_TEST_PAYLOAD, RTLD_NOW);
        REQUIRE_MESSAGE(h != nullptr, dlerror());
        out.start_async = reinterpret_cast<int (*)(const char*)>(dlsym(h, "memray_payload_start_async"));
        out.active = reinterpret_cast<int (*)()>(dlsym(h, "memray_payload_active"));
        out.status = static_cast<memray_payload_status_t*>(dlsym(h, "memray_payload_status"));
        REQUIRE(bool(out.start_async));
        REQUIRE(out.status != nullptr);
        return out;
    }();
    return p;
}

std::string temp_dir() {
    static std::string dir = [] {
        char templ[] = "/tmp/memray-payload-control-XXXXXX";
        REQUIRE(mkdtemp(templ) != nullptr);
        return std::string(templ);
    }();
    return dir;
}

uint64_t status_address() {
    auto loaded = inject::find_loaded_payload(getpid());
    REQUIRE(loaded.has_value());
    return loaded->status_address;
}

inject::PayloadStatus status() { return inject::read_status(getpid(), status_address()); }

inject::PayloadStatus wait_until(uint64_t generation, uint32_t state) {
    return inject::wait_for_status(
        getpid(), status_address(),
        [&](const inject::PayloadStatus& s) {
            return s.generation == generation &&
                   (s.state == state || s.state == MEMRAY_STATE_FAILED);
        },
        5000ms, inject::state_name(state));
}

// What `memray attach` does once start_async returned: hand over the file, wait for active.
uint64_t attach_to(const std::string& path) {
    uint64_t generation = status().generation + 1;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    std::string settings = "output=" + path + "\noutput_fd_handoff=1\nnative=1\n";
    REQUIRE(payload().start_async(settings.c_str()) == 0);
    auto s = wait_until(generation, MEMRAY_STATE_WAITING_FOR_OUTPUT);
    REQUIRE_MESSAGE(s.state == MEMRAY_STATE_WAITING_FOR_OUTPUT, s.error_text);
    REQUIRE(s.handoff_fd >= 0);
    inject::send_fd(getpid(), s.handoff_fd, fd);
    close(fd);  // the payload owns its own copy now
    s = wait_until(generation, MEMRAY_STATE_ACTIVE);
    REQUIRE_MESSAGE(s.state == MEMRAY_STATE_ACTIVE, s.error_text);
    CHECK(s.output == path);
    CHECK(payload().active() == 1);
    return generation;
}

void detach(uint64_t generation) {
    inject::write_stop_request(getpid(), status_address(), generation);
    auto s = wait_until(generation, MEMRAY_STATE_STOPPED);
    REQUIRE_MESSAGE(s.state == MEMRAY_STATE_STOPPED, s.error_text);
    CHECK(payload().active() == 0);
}

// Allocations the capture must show exactly. noinline + -fno-builtin: real calls to malloc.
__attribute__((noinline)) std::vector<void*> allocate(size_t size, int count) {
    std::vector<void*> out;
    out.reserve(size_t(count));
    for (int i = 0; i < count; ++i) {
        void* p = malloc(size);
        std::memset(p, 1, 16);
        out.push_back(p);
    }
    return out;
}

struct Summary {
    std::set<uint64_t> allocated;  // addresses of allocations of the size asked for
    std::set<uint64_t> freed;      // of those, the ones freed
    bool finalized = false;
    uint64_t pid = 0;
};

Summary read_capture(const std::string& path, uint64_t size) {
    struct Listener : format::RecordListener {
        uint64_t size;
        Summary out;
        void on_event(const format::Event& e) override {
            if (e.allocator == format::Allocator::Free) {
                if (out.allocated.count(e.address)) out.freed.insert(e.address);
            } else if (e.size == size) {
                out.allocated.insert(e.address);
            }
        }
        void on_trailer(const format::Trailer&) override { out.finalized = true; }
    } listener;
    listener.size = size;
    format::Reader reader(path);
    reader.read_all(listener);
    listener.out.pid = reader.header().pid;
    return listener.out;
}

bool thread_exists(int tid) {
    return access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) == 0;
}

}  // namespace

TEST_CASE("the status is found in this process's maps at the payload's own symbol") {
    const Payload& p = payload();
    CHECK(status_address() == reinterpret_cast<uint64_t>(p.status));
    auto s = status();
    CHECK_FALSE(s.busy());
    CHECK(p.status->magic == MEMRAY_STATUS_MAGIC);
}

TEST_CASE("start_async, fd handoff, stop_request: the capture holds what happened in between") {
    std::string path = temp_dir() + "/first.bin";
    auto before = allocate(77777, 2);  // before attach: not in the capture
    uint64_t generation = attach_to(path);
    int control_tid = status().control_tid;
    CHECK(control_tid > 0);

    // Only one session at a time.
    CHECK(payload().start_async("output=/nonexistent/x\n") == -EBUSY);

    auto during = allocate(77777, 5);
    free(during[0]);
    free(during[1]);

    // A stop request for another generation (an old detach) is ignored.
    inject::write_stop_request(getpid(), status_address(), generation + 7);
    std::this_thread::sleep_for(50ms);
    CHECK(status().state == MEMRAY_STATE_ACTIVE);

    detach(generation);
    auto after = allocate(77777, 3);  // after detach: not in the capture

    Summary c = read_capture(path, 77777);
    CHECK(c.finalized);
    CHECK(c.pid == uint64_t(getpid()));
    CHECK(c.allocated == std::set<uint64_t>{uint64_t(during[0]), uint64_t(during[1]),
                                            uint64_t(during[2]), uint64_t(during[3]),
                                            uint64_t(during[4])});
    CHECK(c.freed == std::set<uint64_t>{uint64_t(during[0]), uint64_t(during[1])});

    // The control thread is gone once it reported stopped.
    for (int i = 0; i < 100 && thread_exists(control_tid); ++i) std::this_thread::sleep_for(10ms);
    CHECK_FALSE(thread_exists(control_tid));
    for (void* q : before) free(q);
    for (size_t i = 2; i < during.size(); ++i) free(during[i]);
    for (void* q : after) free(q);
}

TEST_CASE("a second session writes a new file with only its own allocations") {
    std::string first = temp_dir() + "/again-1.bin";
    std::string second = temp_dir() + "/again-2.bin";
    uint64_t g1 = attach_to(first);
    auto a = allocate(66666, 4);
    detach(g1);
    uint64_t g2 = attach_to(second);
    CHECK(g2 == g1 + 1);
    auto b = allocate(66666, 3);
    detach(g2);

    Summary c1 = read_capture(first, 66666);
    Summary c2 = read_capture(second, 66666);
    CHECK(c1.finalized);
    CHECK(c2.finalized);
    CHECK(c1.allocated.size() == 4);
    CHECK(c2.allocated.size() == 3);
    for (void* q : b) CHECK(c2.allocated.count(uint64_t(q)) == 1);
    for (void* q : a) free(q);
    for (void* q : b) free(q);
}

TEST_CASE("no descriptor within the handoff timeout: failed with a reason, and a retry works") {
    uint64_t generation = status().generation + 1;
    REQUIRE(payload().start_async("output=/tmp/never\noutput_fd_handoff=1\nhandoff_timeout_ms=100\n") ==
            0);
    auto s = wait_until(generation, MEMRAY_STATE_FAILED);
    CHECK(s.state == MEMRAY_STATE_FAILED);
    CHECK(s.error_text.find("no output file received") != std::string::npos);
    CHECK(s.error_code == -ETIMEDOUT);
    CHECK(access("/tmp/never", F_OK) != 0);
    CHECK(payload().active() == 0);

    uint64_t again = attach_to(temp_dir() + "/after-failure.bin");
    CHECK(again == generation + 1);
    detach(again);
}

TEST_CASE("a stop request while waiting for the output cancels the start at once") {
    uint64_t generation = status().generation + 1;
    REQUIRE(payload().start_async("output=/tmp/never\noutput_fd_handoff=1\n") == 0);
    auto s = wait_until(generation, MEMRAY_STATE_WAITING_FOR_OUTPUT);
    REQUIRE(s.state == MEMRAY_STATE_WAITING_FOR_OUTPUT);
    auto asked = std::chrono::steady_clock::now();
    inject::write_stop_request(getpid(), status_address(), generation);
    s = wait_until(generation, MEMRAY_STATE_FAILED);
    CHECK(s.state == MEMRAY_STATE_FAILED);
    CHECK(s.error_code == -ECANCELED);
    CHECK(std::chrono::steady_clock::now() - asked < 1s);  // not the 10 s handoff timeout
    CHECK(payload().active() == 0);
}

TEST_CASE("bad settings fail on the control thread with the parser's message") {
    uint64_t generation = status().generation + 1;
    REQUIRE(payload().start_async("this is not a setting") == 0);
    auto s = wait_until(generation, MEMRAY_STATE_FAILED);
    CHECK(s.state == MEMRAY_STATE_FAILED);
    CHECK(s.error_text.find("malformed setting") != std::string::npos);
}

TEST_CASE("the payload's socket is closed after the handoff (no descriptor leaks into the target)") {
    auto count_fds = [] {
        int n = 0;
        DIR* d = opendir("/proc/self/fd");
        while (readdir(d) != nullptr) ++n;
        closedir(d);
        return n;
    };
    int before = count_fds();
    uint64_t g = attach_to(temp_dir() + "/fds.bin");
    detach(g);
    CHECK(count_fds() == before);
}

TEST_CASE("a version 1 status (before stopped_unix_ms) is still read; a newer version is refused") {
    memray_payload_status_t fake{};
    fake.magic = MEMRAY_STATUS_MAGIC;
    fake.version = 1;
    fake.size = offsetof(memray_payload_status_t, stopped_unix_ms);
    fake.state = MEMRAY_STATE_STOPPED;
    fake.error_code = -ENOSPC;
    fake.stopped_unix_ms = 12345;  // beyond a version 1 status: must not be read
    auto address = reinterpret_cast<uint64_t>(&fake);
    inject::PayloadStatus s = inject::read_status(getpid(), address);
    CHECK(s.write_failed());
    CHECK(s.stopped_unix_ms == 0);
    fake.version = MEMRAY_STATUS_VERSION + 1;
    fake.size = sizeof fake;
    CHECK_THROWS_AS(inject::read_status(getpid(), address), attach::AttachError);
}

TEST_CASE("a write error is worded with the time it happened and what the capture holds") {
    ::setenv("TZ", "UTC", 1);
    ::tzset();
    inject::PayloadStatus s;
    s.state = MEMRAY_STATE_STOPPED;
    s.error_code = -ENOSPC;
    s.output = "/data/x.bin";
    s.error_text = "cannot write /data/x.bin: No space left on device";
    s.stopped_unix_ms = 1764943387000ull;  // 2025-12-05 14:03:07 UTC
    CHECK(inject::write_failure_message(s) ==
          "tracking stopped at 14:03:07: cannot write /data/x.bin: No space left on device; the "
          "capture holds what was written before");
    s.error_text.clear();  // the CLI words it from error_code alone
    s.stopped_unix_ms = 0;
    CHECK(inject::write_failure_message(s) ==
          "tracking stopped: cannot write /data/x.bin: No space left on device; the capture holds "
          "what was written before");
}
