// Decoders for the three line-table encodings CPython has used (see CPython's
// Objects/lnotab_notes.txt and Objects/locations.md / InternalDocs/locations.md). Each returns
// what PyCode_Addr2Line would for the same code object and byte offset, except that "no line"
// (-1 in CPython) becomes `first_line`.
#include "report/python_lines.hpp"

#include <cstddef>

namespace memray::report {
namespace {

constexpr int k_no_line = -1;

// 3.8-3.9 co_lnotab: (unsigned byte offset increment, signed line increment) pairs. The line of
// an offset is the line after applying every pair whose cumulative offset is <= that offset.
int lnotab_line(std::string_view table, int first_line, uint32_t offset) {
    int line = first_line;
    uint64_t addr = 0;
    for (size_t i = 0; i + 1 < table.size(); i += 2) {
        addr += uint8_t(table[i]);
        if (addr > offset) break;
        line += int8_t(table[i + 1]);
    }
    return line;
}

// 3.10 co_linetable: (unsigned byte length, signed line delta) pairs, each describing the next
// range of bytecode; a delta of -128 means the range has no line (and leaves the line alone).
int linetable_310_line(std::string_view table, int first_line, uint32_t offset) {
    int line = first_line;
    uint64_t end = 0;
    for (size_t i = 0; i + 1 < table.size(); i += 2) {
        uint64_t start = end;
        end += uint8_t(table[i]);
        int8_t delta = int8_t(table[i + 1]);
        bool has_line = delta != -128;
        if (has_line) line += delta;
        if (start <= offset && offset < end) return has_line ? line : k_no_line;
    }
    return k_no_line;
}

// 3.11+ location table. Every entry starts with a byte 1cccclll: c = kind, l = length - 1 in code
// units (2 bytes each); the following bytes (high bit clear) carry the line delta and columns:
//   15: no location; 14: long form (svarint line delta, varint end line, varint columns);
//   13: no columns (svarint line delta); 10-12: one line, delta = kind - 10, two column bytes;
//   0-9: short form, same line.
// varints are 6-bit little-endian groups with 0x40 as continuation; svarint stores the sign in
// bit 0.
class LocationReader {
public:
    explicit LocationReader(std::string_view table) : m_table(table) {}

    bool at_end() const { return m_pos >= m_table.size(); }
    uint8_t byte() { return m_pos < m_table.size() ? uint8_t(m_table[m_pos++]) : 0; }

    uint32_t varint() {
        uint32_t value = 0;
        unsigned shift = 0;
        uint8_t b;
        do {
            b = byte();
            if (shift < 32) value |= uint32_t(b & 0x3f) << shift;
            shift += 6;
        } while ((b & 0x40) != 0 && !at_end());
        return value;
    }

    int svarint() {
        uint32_t v = varint();
        return (v & 1) ? -int(v >> 1) : int(v >> 1);
    }

    // Moves to the next entry start (a byte with the high bit set).
    void skip_to_entry() {
        while (m_pos < m_table.size() && (uint8_t(m_table[m_pos]) & 0x80) == 0) ++m_pos;
    }

private:
    std::string_view m_table;
    size_t m_pos = 0;
};

int locations_line(std::string_view table, int first_line, uint32_t offset) {
    LocationReader reader(table);
    int line = first_line;
    uint64_t end = 0;
    while (!reader.at_end()) {
        uint8_t head = reader.byte();
        if ((head & 0x80) == 0) return k_no_line;  // malformed: not an entry start
        unsigned kind = (head >> 3) & 0x0f;
        uint64_t start = end;
        end += uint64_t((head & 7) + 1) * 2;
        bool has_line = true;
        if (kind == 15) {
            has_line = false;
        } else if (kind == 14 || kind == 13) {
            line += reader.svarint();
        } else if (kind >= 10) {
            line += int(kind) - 10;
        }
        if (start <= offset && offset < end) return has_line ? line : k_no_line;
        reader.skip_to_entry();  // columns and end line are not needed here
    }
    return k_no_line;
}

}  // namespace

uint32_t python_line(uint32_t line_format, std::string_view table, uint32_t first_line,
                     uint32_t offset) {
    int first = int(first_line);
    int line;
    if (line_format < 0x030a) {
        line = lnotab_line(table, first, offset);
    } else if (line_format == 0x030a) {
        line = linetable_310_line(table, first, offset);
    } else {
        line = locations_line(table, first, offset);
    }
    return line > 0 ? uint32_t(line) : first_line;
}

}  // namespace memray::report
