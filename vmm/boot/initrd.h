// The initial ramdisk: validated and placed where the kernel can reach it.
#pragma once

#include <cstdint>
#include <span>

#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"

namespace vicvmm::boot {

struct InitrdPlacement {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

// Checks that `image` is a newc cpio archive ("070701"/"070702") or a
// compressed image the kernel can unpack (gzip, bzip2, xz, lzma, lzo, lz4,
// zstd), then copies it page-aligned as high as possible below
// min(end of the RAM region at 0, addr_max + 1, kInitrdCeiling) and above
// kernel_end. `addr_max` is the highest byte allowed (setup header style).
Result<InitrdPlacement> load_initrd(GuestMemory& mem, std::span<const uint8_t> image, uint64_t kernel_end,
                                    uint64_t addr_max);

}  // namespace vicvmm::boot
