// Software walk of x86-64 4-level page tables held in guest memory: turns a
// guest-virtual address into a guest-physical one without asking KVM (used to
// fetch the instruction bytes behind an emulation failure).
#pragma once

#include <cstdint>

#include "vmm/memory/guest_memory.h"

namespace vicvmm {

// cr3: the guest's CR3; only 4-level paging (CR4.PAE, EFER.LMA) is walked.
Result<uint64_t> translate_gva(const GuestMemory& mem, uint64_t cr3, uint64_t gva);

// Copies up to out.size() bytes at `gva`, stopping early at an unmapped page;
// returns how many bytes were read.
Result<size_t> read_gva(const GuestMemory& mem, uint64_t cr3, uint64_t gva, std::span<uint8_t> out);

}  // namespace vicvmm
