// GOT/PLT patching of every loaded object (hooks.cpp, got_patch.cpp). See docs/architecture.md.
#pragma once

namespace memray::payload {

// Resolves the real allocator functions and patches the JUMP_SLOT/GLOB_DAT slots of every loaded
// object (the payload, the dynamic loader and the vdso excepted). Returns 0 or a negative errno-style
// code; on failure nothing stays patched. Idempotent. Called from the payload's own thread.
int install_hooks() noexcept;
// Patches objects loaded since the last call (called from the dlopen hook).
int patch_new_objects() noexcept;
// Restores every slot that still holds our hook to the value it held before. Hooks stay resident
// and keep forwarding (a thread may still be inside one, or hold a pointer read from a slot).
void uninstall_hooks() noexcept;
// Number of slots currently patched (for tests and `-v`).
unsigned patched_slot_count() noexcept;

}  // namespace memray::payload
