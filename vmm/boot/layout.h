// Guest-physical layout used to boot an x86-64 Linux kernel, in one place.
//
//   0x0000_0500  GDT (4 entries)            0x0000_0520  IDT (empty)
//   0x0000_7000  boot_params (zero page)    0x0000_8ff0  boot stack top
//   0x0000_9000  PML4, 0xa000 PDPT, 0xb000..0xf000 four PDs (identity 0..4 GiB)
//   0x0002_0000  kernel command line (2 KiB)
//   0x0007_d000  mailbox strings extension   \ e820-reserved 0x7d000..0x100000
//   0x0009_d000  mailbox page (vicvmm_abi.h)  |
//   0x0009_fc00  MP table                     /
//   0x0100_0000  kernel (bzImage default / vmlinux p_paddr)
//   below 3 GiB  initrd, as high as the kernel allows
#pragma once

#include <cstdint>

#include "guest/abi/vicvmm_abi.h"

namespace vicvmm::boot {

// Boot GDT/IDT: low, out of the kernel's way; the kernel loads its own soon.
inline constexpr uint64_t kGdtGpa = 0x500;
inline constexpr uint64_t kIdtGpa = 0x520;

// Zero page: below the reserved range so it is ordinary RAM the kernel may reclaim later.
inline constexpr uint64_t kBootParamsGpa = 0x7000;
inline constexpr uint64_t kBootParamsSize = 0x1000;

// Initial stack (grows down into 0x8000..0x8ff0, just above the zero page).
inline constexpr uint64_t kBootStackGpa = 0x8ff0;

// Identity page tables for 0..4 GiB with 2 MiB pages: PML4, one PDPT, 4 PDs.
inline constexpr uint64_t kPml4Gpa = 0x9000;
inline constexpr uint64_t kPdptGpa = 0xa000;
inline constexpr uint64_t kPdGpa = 0xb000;  // 4 consecutive pages: 0xb000..0xf000
inline constexpr uint64_t kPdCount = 4;

// Kernel command line; 2048 bytes including the terminating NUL.
inline constexpr uint64_t kCmdlineGpa = 0x20000;
inline constexpr uint64_t kCmdlineMaxSize = 2048;

// The mailbox's string extension starts the reserved low range; the mailbox
// page, the MP table and the legacy VGA/BIOS hole up to 1 MiB are in it too,
// so e820 RAM is 0..0x7d000.
inline constexpr uint64_t kMailboxGpa = VIC_MAILBOX_GPA;
inline constexpr uint64_t kLowReservedStart = VIC_MAILBOX_EXT_GPA;
inline constexpr uint64_t kLowReservedEnd = 0x100000;

// MP floating pointer at 0x9fc00: the last KiB of base memory, which Linux
// scans before the BIOS area (so a no-ACPI kernel boots without a slow scan).
inline constexpr uint64_t kMpTableGpa = 0x9fc00;
inline constexpr uint64_t kMpTableLimit = 0xa0000;  // the whole table must end below this

// Kernel load address when a bzImage does not state pref_address (16 MiB, the
// x86-64 default LOAD_PHYSICAL_ADDR). Nothing may be loaded below 1 MiB.
inline constexpr uint64_t kKernelDefaultGpa = 0x1000000;
inline constexpr uint64_t kKernelMinGpa = kLowReservedEnd;

// Everything handed to the kernel must be reachable through the boot page
// tables and stay below the 32-bit MMIO hole.
inline constexpr uint64_t kIdentityMapEnd = 0x1'0000'0000ull;
inline constexpr uint64_t kInitrdCeiling = 0xC000'0000ull;

inline constexpr uint64_t kPageSize = 0x1000;

static_assert(kGdtGpa + 4 * 8 <= kIdtGpa);
static_assert(kBootParamsGpa + kBootParamsSize <= kBootStackGpa);
static_assert(kBootStackGpa < kPml4Gpa);
static_assert(kPdGpa + kPdCount * kPageSize <= kCmdlineGpa);
static_assert(kCmdlineGpa + kCmdlineMaxSize <= kLowReservedStart);
static_assert(kMailboxGpa + VIC_MAILBOX_SIZE <= kMpTableGpa);
static_assert(VIC_MAILBOX_EXT_GPA + VIC_MAILBOX_EXT_SIZE == kMailboxGpa);

}  // namespace vicvmm::boot
