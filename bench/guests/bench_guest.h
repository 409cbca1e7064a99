/* The benchmark's tiny guest (bench_clone.S) and the C++ suite share these.
 * Plain #defines only, so that GNU as (through the C preprocessor) and C++
 * can both include it; bench/suite.cc static_asserts the mailbox offsets
 * against guest/abi/vicvmm_abi.h.
 *
 * The guest is a flat binary entered at its first byte at BG_LOAD_GPA in
 * long mode at CPL0 (enter_long_mode: identity map 0..4 GiB with 2 MiB pages).
 */
#ifndef VICVMM_BENCH_GUEST_H
#define VICVMM_BENCH_GUEST_H

#define BG_LOAD_GPA 0x100000
#define BG_MEM_SIZE 0x2000000            /* 32 MiB of guest RAM */

/* The raw-KVM floor enters here (no state restore beyond CS/RIP): one `out`. */
#define BG_FLOOR_OFFSET 0x10
#define BG_FLOOR_PORT 0x80

/* Mailbox (vicvmm_abi.h: struct vic_mailbox at VIC_MAILBOX_GPA). */
#define BG_MAILBOX_GPA 0x9d000
#define BG_MB_SEED0 32       /* offsetof(vic_mailbox, seed[0]): K, pages to dirty */
#define BG_MB_GENERATION 72  /* offsetof(vic_mailbox, generation) */

/* Pages dirtied by a clone: K consecutive pages from BG_DIRTY_BASE, one
 * 8-byte store each, K clamped to BG_DIRTY_MAX (the rest of guest RAM). */
#define BG_DIRTY_BASE 0x400000
#define BG_DIRTY_MAX ((BG_MEM_SIZE - BG_DIRTY_BASE) / 0x1000)

#define BG_DOORBELL_PORT 0x510
#define BG_EV_READY 1
#define BG_EV_EXIT 2
#define BG_EV_TEMPLATE 4
#define BG_DOORBELL(ev, arg) (((ev) << 24) | ((arg) & 0xffffff))

#endif
