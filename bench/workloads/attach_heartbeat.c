// Target of bench/bench_attach.py: measures, from inside the process, what attaching a tool
// costs it.
//  - A heartbeat thread wakes every 100 us and records the longest gap between two wakeups
//    (a stopped process, or one whose threads are all held, shows up as one long gap).
//  - A busy thread calls malloc/free and watches this program's own GOT slots for malloc
//    (GLOB_DAT, read through malloc@GOTPCREL, and the PLT's JUMP_SLOT): the moment a slot stops
//    holding libc's malloc is when an interposer (our payload, heaptrack) became active, and the
//    moment it holds it again is when its detach took effect. Times are CLOCK_MONOTONIC ns, the
//    clock the driver's time.monotonic_ns() reads.
// With ATTACH_HEARTBEAT_RT=1 the heartbeat thread (only it: it sleeps almost all the time) runs
// SCHED_FIFO, so that other load on the machine does not show up as stalls; a thread stopped
// by ptrace still does.
// Commands on stdin: "reset" -> clears the records, answers "reset"; "report" -> one line
//   "report max_gap_us=N gaps_over_1ms=N changed_ns=T restored_ns=T patched=0|1"; "quit".
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_llong g_max_gap_ns;
static atomic_llong g_gaps_over_1ms;
static atomic_llong g_changed_ns;   // first time a slot left libc's malloc since reset
static atomic_llong g_restored_ns;  // first time both slots were back after a change
static atomic_int g_patched;
static atomic_int g_stop;
static void* volatile* g_plt_slot;  // JUMP_SLOT of malloc in this executable, if found
static void* g_original;            // what both slots hold before any tool touches them

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void* got_malloc(void) {
    void* p;
    // Read the GOT slot on every call: the compiler would otherwise treat it as a constant.
    __asm__ volatile("movq malloc@GOTPCREL(%%rip), %0" : "=r"(p));
    return p;
}

static int find_plt_slot(struct dl_phdr_info* info, size_t size, void* data) {
    (void)size, (void)data;
    // The first object reported is the executable itself.
    const ElfW(Rela)* jmprel = NULL;
    size_t pltrelsz = 0;
    const ElfW(Sym)* symtab = NULL;
    const char* strtab = NULL;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
        for (const ElfW(Dyn)* d = (const void*)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
             d->d_tag != DT_NULL; ++d) {
            if (d->d_tag == DT_JMPREL) jmprel = (const void*)d->d_un.d_ptr;
            if (d->d_tag == DT_PLTRELSZ) pltrelsz = d->d_un.d_val;
            if (d->d_tag == DT_SYMTAB) symtab = (const void*)d->d_un.d_ptr;
            if (d->d_tag == DT_STRTAB) strtab = (const void*)d->d_un.d_ptr;
        }
    }
    if (!jmprel || !symtab || !strtab) return 1;
    for (size_t i = 0; i < pltrelsz / sizeof *jmprel; ++i) {
        const ElfW(Sym)* s = &symtab[ELF64_R_SYM(jmprel[i].r_info)];
        if (strcmp(strtab + s->st_name, "malloc") == 0)
            g_plt_slot = (void* volatile*)(info->dlpi_addr + jmprel[i].r_offset);
    }
    return 1;
}

static void* heartbeat(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "heartbeat");
    const char* rt = getenv("ATTACH_HEARTBEAT_RT");
    if (rt && strcmp(rt, "1") == 0) {
        struct sched_param sp = {.sched_priority = 10};
        int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (err) fprintf(stderr, "attach_heartbeat: SCHED_FIFO: %s\n", strerror(err));
    }
    long long prev = now_ns();
    const struct timespec tick = {0, 100 * 1000};
    while (!atomic_load(&g_stop)) {
        nanosleep(&tick, NULL);
        long long t = now_ns();
        long long gap = t - prev;
        prev = t;
        if (gap > 1000000) atomic_fetch_add(&g_gaps_over_1ms, 1);
        long long m = atomic_load(&g_max_gap_ns);
        while (gap > m && !atomic_compare_exchange_weak(&g_max_gap_ns, &m, gap)) {
        }
    }
    return NULL;
}

static void* volatile g_sink;

static void* busy(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "busy");
    while (!atomic_load(&g_stop)) {
        for (int i = 0; i < 64; ++i) {
            void* p = malloc(64 + i);
            g_sink = p;
            free(p);
        }
        int patched = got_malloc() != g_original || (g_plt_slot && *g_plt_slot != g_original);
        if (patched != atomic_load(&g_patched)) {
            long long t = now_ns();
            long long zero = 0;
            if (patched)
                atomic_compare_exchange_strong(&g_changed_ns, &zero, t);
            else
                atomic_compare_exchange_strong(&g_restored_ns, &zero, t);
            atomic_store(&g_patched, patched);
        }
    }
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    free(malloc(1));  // binds the PLT slot (lazy binding) before we take its value
    g_original = got_malloc();
    dl_iterate_phdr(find_plt_slot, NULL);
    if (g_plt_slot && *g_plt_slot != g_original) {
        fprintf(stderr, "attach_heartbeat: PLT slot %p != GOT %p; watching the GOT only\n",
                *g_plt_slot, g_original);
        g_plt_slot = NULL;
    }
    pthread_t t_heart, t_busy;
    if (pthread_create(&t_heart, NULL, heartbeat, NULL) != 0 ||
        pthread_create(&t_busy, NULL, busy, NULL) != 0)
        return 2;
    printf("ready watching=%s\n", g_plt_slot ? "got+plt" : "got");
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "reset", 5) == 0) {
            atomic_store(&g_max_gap_ns, 0);
            atomic_store(&g_gaps_over_1ms, 0);
            atomic_store(&g_changed_ns, 0);
            atomic_store(&g_restored_ns, 0);
            printf("reset\n");
        } else if (strncmp(line, "report", 6) == 0) {
            printf("report max_gap_us=%lld gaps_over_1ms=%lld changed_ns=%lld restored_ns=%lld "
                   "patched=%d\n",
                   atomic_load(&g_max_gap_ns) / 1000, atomic_load(&g_gaps_over_1ms),
                   atomic_load(&g_changed_ns), atomic_load(&g_restored_ns),
                   atomic_load(&g_patched));
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    atomic_store(&g_stop, 1);
    pthread_join(t_heart, NULL);
    pthread_join(t_busy, NULL);
    return 0;
}
