// bzImage kernels, entered through the 64-bit boot protocol (boot.rst).
#pragma once

#include <cstdint>
#include <span>

#include "vmm/boot/kernel_loader.h"

namespace vicvmm::boot {

// True when the image carries either bzImage marker (0xaa55 at 0x1fe or
// "HdrS" at 0x202), so a damaged bzImage still gets a bzImage diagnosis.
bool is_bzimage(std::span<const uint8_t> image);

// Copies the protected-mode part (after (setup_sects + 1) * 512 bytes) to
// pref_address (protocol 2.10+) or kKernelDefaultGpa, aligned to
// kernel_alignment when relocatable. Needs protocol 2.06+ and XLF_KERNEL_64;
// the entry is the load address + 0x200. load_end covers init_size.
Result<LoadedKernel> load_bzimage_kernel(GuestMemory& mem, std::span<const uint8_t> image);

}  // namespace vicvmm::boot
