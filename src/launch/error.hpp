// The launch stage's one exception type: a user-facing problem (a program that cannot be found or
// run, an output file that may not be written). The CLI prints it as "memray: error: <what>".
#pragma once

#include <stdexcept>
#include <string>

namespace memray::launch {

class LaunchError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

}  // namespace memray::launch
