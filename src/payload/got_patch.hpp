// ELF dynamic-section work for the hooks: finding a symbol's real definition, rewriting the
// JUMP_SLOT / GLOB_DAT slots that import it, and undoing that exactly. Cold path only: runs on
// the payload's own thread or inside the dlopen/dlclose hooks, never on an allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload::got {

struct HookedSymbol {
    const char* name;
    void* hook;  // what patched slots will hold
    void* real;  // filled by resolve_real(): the definition our hook forwards to, or nullptr
};

// Looks each symbol's definition up in the loaded objects in load order (GNU or SysV hash over
// .dynsym), skipping undefined entries (a non-PIE executable's canonical PLT entry), the object
// that contains `self` (the payload), the dynamic loader and the vdso. Never dlsym: in a non-PIE
// executable "malloc" resolves to its own PLT entry, which would lead straight back to our hook.
// Fills `real` where still null; returns how many symbols have a real definition.
size_t resolve_real(HookedSymbol* symbols, size_t count, const void* self) noexcept;

// Patches every slot of every loaded object (skipping the object containing `self` unless it is
// the main executable, the loader and the vdso) whose relocation names one of `symbols` with a
// non-null `real`. With `only_new`, objects patched before are skipped unless something was
// unloaded since (then a reloaded object at the same address is patched again); `only_new` does
// nothing unless a full pass ran since the last unpatch_all(). The table must stay alive until
// unpatch_all(). Returns the number of slots newly patched, or a negative errno.
int patch_objects(const HookedSymbol* symbols, size_t count, const void* self, bool only_new) noexcept;

// Restores every remembered slot that still holds our hook to its previous value, restoring the
// page protection; slots of objects unloaded since are forgotten without being touched.
void unpatch_all() noexcept;

// Forgets the slots of objects that are no longer loaded (after dlclose). Touches no slot.
void forget_unloaded() noexcept;

// Fork handlers (api.cpp): hold the patch mutex across fork(), so the child never inherits a
// half-patched table or a mutex held by a thread it does not have.
void lock_for_fork() noexcept;
void unlock_after_fork_parent() noexcept;
void reset_after_fork_child() noexcept;

// Slots currently patched by us.
unsigned patched_slot_count() noexcept;

// For the dlopen hook: glibc resolves a slash-less name against its caller's DT_RUNPATH/DT_RPATH
// and $ORIGIN, and after interposition the caller is the payload. Finds the object containing
// `caller`, searches the directories it (and, for DT_RPATH, the executable) names the way the
// loader would, and writes the full path of an existing file to `out`. Returns false when the
// name should be passed on unchanged (slash in it, found on LD_LIBRARY_PATH first, not found).
bool resolve_library_for_caller(const char* name, const void* caller, char* out, size_t out_len) noexcept;

// The main executable's path (/proc/self/exe) into out; returns its length, 0 if unknown.
size_t executable_path(char* out, size_t len) noexcept;

// Calls fn(slot, ctx) for every JUMP_SLOT/GLOB_DAT slot currently recorded (tests).
void for_each_patched_slot(void (*fn)(uintptr_t slot, uintptr_t previous, void* ctx), void* ctx) noexcept;

}  // namespace memray::payload::got
