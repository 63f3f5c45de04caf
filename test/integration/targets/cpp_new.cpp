// C++ allocations through operator new / new[] (libstdc++ reaches malloc through its own GOT).
// Announces each distinctive request as "EXPECT <thread> <KIND> <size> <count>".
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Blob {
    char bytes[1234579];
};

void* volatile g_sink;  // published pointers cannot be elided with their new/delete pair

}  // namespace

int main() {
    constexpr int k_reps = 4;
    constexpr std::size_t k_array = 1234571;
    std::vector<std::unique_ptr<Blob>> blobs;
    blobs.reserve(k_reps);  // keep the vector's own allocations small and out of the way
    for (int i = 0; i < k_reps; ++i) {
        blobs.push_back(std::make_unique<Blob>());
        g_sink = blobs.back().get();
    }
    auto* array = new char[k_array];
    g_sink = array;
    delete[] array;
    blobs.clear();
    std::printf("EXPECT MAIN MALLOC %zu %d\n", sizeof(Blob), k_reps);
    std::printf("EXPECT MAIN MALLOC %zu %d\n", k_array, 1);
    return 0;
}
