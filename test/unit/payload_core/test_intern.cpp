// The global stack tree: ids, the metadata channel's contents, the prefix cache, growth and
// concurrent interning.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "format/encoder.hpp"
#include "payload/stack_intern.hpp"
#include "stubs.hpp"

using namespace memray::payload;
using memray::format::FrameKind;

namespace memray::payload {
void writer_wake_now() noexcept {}
}  // namespace memray::payload

namespace {

struct Channel {
    std::vector<MetaNode> nodes;
    std::vector<std::string> code_records;  // encoded Code records
};

// Takes everything queued so far, as the writer does.
Channel drain() {
    Channel c;
    MetaView v = metadata_peek();
    const uint8_t* p = v.data;
    MetaKind kind;
    MetaNode node;
    const uint8_t* code;
    size_t len;
    while ((p = metadata_next(p, v.data + v.len, kind, node, code, len))) {
        if (kind == MetaKind::Node) c.nodes.push_back(node);
        else c.code_records.emplace_back(reinterpret_cast<const char*>(code), len);
    }
    metadata_consume(v.len);
    return c;
}

StackFrame native(uint64_t ip) { return StackFrame{ip, 0, 0, uint32_t(FrameKind::Native)}; }
StackFrame python(const stubs::FakeCode& c, uint32_t offset) {
    return StackFrame{uint64_t(uintptr_t(&c)), c.fingerprint, offset, uint32_t(FrameKind::Python)};
}

// Path of a node to the root (innermost first) as native ips, from the drained records.
std::vector<uint64_t> path(const std::map<uint32_t, MetaNode>& nodes, uint32_t id) {
    std::vector<uint64_t> out;
    while (id) {
        const MetaNode& n = nodes.at(id);
        out.push_back(n.ip);
        id = n.parent;
    }
    return out;
}

}  // namespace

TEST_CASE("nodes are interned once, ids are sequential and records are queued") {
    REQUIRE(intern_init());
    intern_reset();
    uint32_t a = intern_frame(0, native(0x1000));
    uint32_t b = intern_frame(a, native(0x2000));
    uint32_t c = intern_frame(0, native(0x2000));  // same frame, other parent: other node
    CHECK(a == 1);
    CHECK(b == 2);
    CHECK(c == 3);
    CHECK(intern_frame(a, native(0x2000)) == b);
    CHECK(intern_frame(0, native(0x1000)) == a);
    CHECK(intern_node_count() == 3);

    Channel ch = drain();
    REQUIRE(ch.nodes.size() == 3);
    CHECK(ch.nodes[0].id == 1);
    CHECK(ch.nodes[0].parent == 0);
    CHECK(ch.nodes[0].ip == 0x1000);
    CHECK(ch.nodes[1].parent == 1);
    CHECK(ch.nodes[1].ip == 0x2000);
    CHECK(ch.nodes[2].parent == 0);
    CHECK(ch.nodes[2].kind == FrameKind::Native);
    CHECK(drain().nodes.empty());  // consumed

    intern_reset();
    CHECK(intern_frame(0, native(0x2000)) == 1);
    CHECK(intern_node_count() == 1);
}

TEST_CASE("python frames intern their code once and detect a reused code address") {
    intern_reset();
    stubs::FakeCode code{"outer", "/src/app.py", 10, 111};
    uint32_t n1 = intern_frame(0, python(code, 4));
    uint32_t n2 = intern_frame(0, python(code, 8));  // same code, other offset
    CHECK(n1 != n2);
    CHECK(intern_code_count() == 1);
    Channel ch = drain();
    REQUIRE(ch.code_records.size() == 1);
    // The Code record precedes the Node records that name it and carries the details.
    const std::string& rec = ch.code_records[0];
    CHECK(uint8_t(rec[0]) == uint8_t(memray::format::Tag::Code));
    CHECK(rec.find("outer") != std::string::npos);
    CHECK(rec.find("/src/app.py") != std::string::npos);
    REQUIRE(ch.nodes.size() == 2);
    CHECK(ch.nodes[0].kind == FrameKind::Python);
    CHECK(ch.nodes[0].code_id == 1);
    CHECK(ch.nodes[0].offset == 4);
    CHECK(ch.nodes[1].offset == 8);

    // The object at that address died and another code object was created there.
    code = stubs::FakeCode{"other", "/src/other.py", 3, 222};
    uint32_t n3 = intern_frame(0, python(code, 4));
    CHECK(n3 != n1);
    CHECK(intern_code_count() == 2);
    ch = drain();
    REQUIRE(ch.code_records.size() == 1);
    CHECK(ch.code_records[0].find("other") != std::string::npos);
    REQUIRE(ch.nodes.size() == 1);
    CHECK(ch.nodes[0].code_id == 2);
}

TEST_CASE("intern_stack reuses the common prefix and builds the right path") {
    intern_reset();
    PrefixCache cache;
    std::vector<StackFrame> s1 = {native(1), native(2), native(3), native(4)};
    std::vector<StackFrame> s2 = {native(1), native(2), native(5)};
    uint32_t leaf1 = intern_stack(cache, 7, s1.data(), s1.size());
    uint32_t leaf2 = intern_stack(cache, 7, s2.data(), s2.size());
    uint32_t again = intern_stack(cache, 7, s1.data(), s1.size());
    CHECK(again == leaf1);
    CHECK(intern_node_count() == 5);  // 1,2,3,4 and 5 under 2
    Channel ch = drain();
    std::map<uint32_t, MetaNode> nodes;
    for (auto& n : ch.nodes) nodes[n.id] = n;
    CHECK(path(nodes, leaf1) == std::vector<uint64_t>{4, 3, 2, 1});
    CHECK(path(nodes, leaf2) == std::vector<uint64_t>{5, 2, 1});
    CHECK(intern_stack(cache, 7, nullptr, 0) == 0);

    // A new session invalidates the cache: ids from the old tree must not leak into the new one.
    intern_reset();
    uint32_t leaf3 = intern_stack(cache, 8, s2.data(), s2.size());
    CHECK(leaf3 == 3);
    ch = drain();
    nodes.clear();
    for (auto& n : ch.nodes) nodes[n.id] = n;
    CHECK(path(nodes, leaf3) == std::vector<uint64_t>{5, 2, 1});
}

TEST_CASE("the table grows and keeps every id") {
    intern_reset();
    const uint32_t k_n = 300000;  // several doublings of the initial 64 Ki slots
    std::vector<uint32_t> ids(k_n);
    for (uint32_t i = 0; i < k_n; ++i) ids[i] = intern_frame(i % 7, native(0x10000 + i));
    for (uint32_t i = 0; i < k_n; ++i) REQUIRE(ids[i] == i + 1);
    for (uint32_t i = 0; i < k_n; ++i) REQUIRE(intern_frame(i % 7, native(0x10000 + i)) == i + 1);
    CHECK(intern_node_count() == k_n);
    CHECK(drain().nodes.size() == k_n);
}

TEST_CASE("concurrent interning queues every node exactly once") {
    intern_reset();
    const int k_threads = 4;
    const int k_stacks = 2000;
    std::vector<std::vector<uint32_t>> leaves(k_threads, std::vector<uint32_t>(k_stacks));
    std::vector<std::thread> threads;
    for (int t = 0; t < k_threads; ++t) {
        threads.emplace_back([&, t] {
            PrefixCache cache;
            for (int i = 0; i < k_stacks; ++i) {
                int s = (i * 7 + t * 13) % k_stacks;  // different orders per thread
                std::vector<StackFrame> st = {native(100), native(200 + s % 10), native(1000 + s)};
                leaves[t][s] = intern_stack(cache, 1, st.data(), st.size());
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 1; t < k_threads; ++t) CHECK(leaves[t] == leaves[0]);
    Channel ch = drain();
    std::set<std::tuple<uint32_t, uint64_t>> keys;
    std::set<uint32_t> ids;
    for (auto& n : ch.nodes) {
        keys.insert({n.parent, n.ip});
        ids.insert(n.id);
    }
    CHECK(ch.nodes.size() == size_t(1 + 10 + k_stacks));
    CHECK(keys.size() == ch.nodes.size());
    CHECK(ids.size() == ch.nodes.size());
    std::map<uint32_t, MetaNode> nodes;
    for (auto& n : ch.nodes) nodes[n.id] = n;
    for (int s = 0; s < k_stacks; ++s)
        CHECK(path(nodes, leaves[0][s]) ==
              std::vector<uint64_t>{uint64_t(1000 + s), uint64_t(200 + s % 10), 100});
}
