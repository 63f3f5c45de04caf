// Regression runner: reads every file in the given directories through the same code as the
// fuzzer (built with ASan/UBSan by meson), so crashers found once stay fixed.
#include <dirent.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

int read_capture_bytes(const unsigned char* data, size_t size);

int main(int argc, char** argv) {
    int files = 0;
    for (int i = 1; i < argc; ++i) {
        DIR* d = opendir(argv[i]);
        if (!d) {
            std::fprintf(stderr, "cannot open corpus directory %s\n", argv[i]);
            return 1;
        }
        while (dirent* e = readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::string path = std::string(argv[i]) + "/" + e->d_name;
            std::ifstream f(path, std::ios::binary);
            std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), {});
            read_capture_bytes(bytes.data(), bytes.size());
            ++files;
        }
        closedir(d);
    }
    std::printf("read %d corpus files without a crash\n", files);
    return files > 0 ? 0 : 1;
}
