// ELF64 x86-64 kernels (an uncompressed vmlinux, or a freestanding test guest).
#pragma once

#include <cstdint>
#include <span>

#include "vmm/boot/kernel_loader.h"

namespace vicvmm::boot {

// True when the image starts with the ELF magic (whatever its class).
bool is_elf(std::span<const uint8_t> image);

// Loads every PT_LOAD segment at its p_paddr and zeroes its bss tail. The
// entry point is e_entry when it lies inside a segment's physical range (a
// vmlinux links ENTRY(phys_startup_64), already physical); an e_entry inside
// a segment's virtual range is translated through that segment. Segments
// must sit in guest RAM between 1 MiB and 4 GiB (the boot identity map).
Result<LoadedKernel> load_elf_kernel(GuestMemory& mem, std::span<const uint8_t> image);

}  // namespace vicvmm::boot
