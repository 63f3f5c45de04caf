// The interactive `memray tree`: a TreeModel (tree_model.hpp) on the terminal (terminal.hpp),
// the call tree on the left, the selected frame's details and source on the right (below it on
// a narrow terminal), the keys in the footer.
#pragma once

#include "tui/tree_model.hpp"

namespace memray::tui {

// Runs until q, Esc or Ctrl-C. The terminal is restored on every exit path. Throws
// TerminalError when stdin/stdout is not a terminal.
void run_tree_view(TreeModel& model);

}  // namespace memray::tui
