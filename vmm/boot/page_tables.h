// Identity page tables for entering the kernel in 64-bit mode.
#pragma once

#include <cstdint>

#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"

namespace vicvmm::boot {

// Page-table entry bits used by the boot tables.
inline constexpr uint64_t kPtePresent = 1u << 0;
inline constexpr uint64_t kPteWritable = 1u << 1;
inline constexpr uint64_t kPteLargePage = 1u << 7;  // PS: a PD entry maps 2 MiB

// Writes PML4 (kPml4Gpa) -> PDPT (kPdptGpa) -> 4 PDs (kPdGpa..) of 2 MiB
// pages identity-mapping 0..4 GiB, present and writable. Returns the CR3 value.
Result<uint64_t> write_identity_page_tables(GuestMemory& mem);

}  // namespace vicvmm::boot
