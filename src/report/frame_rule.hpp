// Which frames a reporter hides: one rule for the flame graph page (its filters), `tree` and the
// docs.
#pragma once

#include <cstdint>

#include "report/stack_resolver.hpp"

namespace memray::report {

// Irrelevant: interpreter internals a Python user cannot act on: CPython's own C frames (native
// frames of libpython / the python executable, or C functions named _Py* / Py[A-Z]*) and the
// `python -m` machinery (runpy). Import system: frames of importlib's bootstrap.
constexpr uint32_t k_frame_native = 1u << 0;
constexpr uint32_t k_frame_irrelevant = 1u << 1;
constexpr uint32_t k_frame_import = 1u << 2;
uint32_t frame_flags(const Frame& f);

}  // namespace memray::report
