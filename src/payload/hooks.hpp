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
// In a forked child that keeps recording (follow-fork): the slots it inherited stay patched, and
// its own exec/_exit now finalize its own capture.
void hooks_adopt_in_child() noexcept;
// Number of slots currently patched (for tests and `-v`).
unsigned patched_slot_count() noexcept;

// (api.cpp) As memray_payload_stop(), for exec and _exit: the Python allocator hooks stay in
// place, forwarding only. The process image ends anyway, and taking the GIL from here could wait
// for a thread that never lets it go.
int stop_before_exit() noexcept;

}  // namespace memray::payload
