// placeholder: being written (owner "symbolizer"). Symbolizes nothing: every native frame shows as
// module+0xoffset until the LLVM-backed implementation lands.
#include "report/symbolizer.hpp"

namespace memray::report {

struct Symbolizer::Impl {
    std::vector<SourceFrame> none;
};

Symbolizer::Symbolizer(SymbolizerOptions) : m_impl(std::make_unique<Impl>()) {}
Symbolizer::~Symbolizer() = default;

const std::vector<SourceFrame>& Symbolizer::symbolize(const format::ObjectInfo&, uint32_t,
                                                      uint64_t) {
    return m_impl->none;
}

std::string Symbolizer::file_for(const format::ObjectInfo&, uint32_t) { return {}; }

std::vector<std::string> Symbolizer::take_warnings() { return {}; }

}  // namespace memray::report
