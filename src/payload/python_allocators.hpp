// --trace-python-allocators: hooks on CPython's PyMem and PyObject allocator domains that record
// PYMALLOC_* events and chain to the allocator installed before them. See docs/architecture.md
// ("Python allocator hooks") for why installing and removing them is safe at any time.
#pragma once

namespace memray::payload {

// True when this process runs an initialized CPython whose allocator API we can reach (checked
// before a session that asks for the hooks writes its header). Cold path.
bool python_allocators_available() noexcept;

// The session starting now wants the hooks (true) or not. Called under the session lock, before
// python_allocators_install(); a stop that comes first turns the wish off, so a late install
// never leaves hooks behind.
void python_allocators_want(bool on) noexcept;

// Takes the GIL (PyGILState_Ensure: from any thread, also one Python never saw) and installs the
// hooks if they are wanted and not installed. Must be called without any payload lock held: a
// thread holding the GIL may be waiting for one. Returns 0 or a negative errno.
int python_allocators_install() noexcept;

// Takes the GIL and puts back exactly the allocators that were installed before ours. If another
// tool installed its own allocator on top of ours meanwhile, ours stay in its chain and only
// forward (tracking is off by then). No-op when not installed or Python is finalizing.
void python_allocators_uninstall() noexcept;

}  // namespace memray::payload
