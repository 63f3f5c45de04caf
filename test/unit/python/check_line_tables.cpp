// Integration test: runs an interpreter on dump_line_tables.py and checks report::python_line()
// against the line CPython itself reports for every instruction offset of ~250 real code objects.
// Usage: check-line-tables <python> <dump_line_tables.py>. Exit 77 when the interpreter is absent.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "report/python_lines.hpp"

namespace {

std::string from_hex(const char* hex) {
    std::string out;
    for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
        char byte[3] = {hex[i], hex[i + 1], 0};
        out.push_back(char(std::strtoul(byte, nullptr, 16)));
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <python> <dump_line_tables.py>\n", argv[0]);
        return 2;
    }
    if (access(argv[1], X_OK) != 0) {
        std::printf("SKIP: interpreter %s not installed\n", argv[1]);
        return 77;
    }
    std::string command = std::string("'") + argv[1] + "' '" + argv[2] + "'";
    FILE* in = popen(command.c_str(), "r");
    if (in == nullptr) {
        std::perror("popen");
        return 1;
    }
    uint32_t format = 0;
    std::string name, table;
    uint32_t first = 0;
    long codes = 0, offsets = 0, failures = 0, declared = -1;
    static char line[1 << 20];  // the hex of a 6000-line function's table fits easily
    while (std::fgets(line, sizeof(line), in) != nullptr) {
        line[std::strcspn(line, "\n")] = '\0';
        if (std::strncmp(line, "version ", 8) == 0) {
            unsigned major = 0, minor = 0;
            std::sscanf(line + 8, "%u.%u", &major, &minor);
            format = (major << 8) | minor;
        } else if (std::strncmp(line, "code ", 5) == 0) {
            name = line + 5;
            ++codes;
        } else if (std::strncmp(line, "first ", 6) == 0) {
            first = uint32_t(std::strtoul(line + 6, nullptr, 10));
        } else if (std::strncmp(line, "table ", 6) == 0) {
            table = from_hex(line + 6);
        } else if (std::strncmp(line, "line ", 5) == 0) {
            unsigned offset = 0;
            int iter_line = 0, api_line = 0;
            std::sscanf(line + 5, "%u %d %d", &offset, &iter_line, &api_line);
            ++offsets;
            uint32_t got = memray::report::python_line(format, table, first, offset);
            // CPython's "no line" (-1) is reported as the first line by contract.
            auto expect = [first](int l) { return l > 0 ? uint32_t(l) : first; };
            if (got != expect(iter_line) || got != expect(api_line)) {
                if (++failures <= 20) {
                    std::printf("FAIL %s offset %u: python_line=%u, co_lines=%d, "
                                "PyCode_Addr2Line=%d\n",
                                name.c_str(), offset, got, iter_line, api_line);
                }
            }
        } else if (std::strncmp(line, "total ", 6) == 0) {
            declared = std::strtol(line + 6, nullptr, 10);
        }
    }
    int status = pclose(in);
    if (status != 0 || declared != codes || codes < 100) {
        std::printf("FAIL: dump script exited with status %d after %ld of %ld code objects\n",
                    status, codes, declared);
        return 1;
    }
    std::printf("%s (format 0x%04x): %ld code objects, %ld offsets, %ld mismatches\n", argv[1],
                format, codes, offsets, failures);
    return failures == 0 ? 0 : 1;
}
