// Loading a Linux kernel image into guest memory: an uncompressed ELF64
// vmlinux (elf_loader.h) or a bzImage (bzimage_loader.h), told apart by magic.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"

namespace vicvmm::boot {

enum class KernelKind { Elf, BzImage };

struct LoadedKernel {
  uint64_t entry_gpa = 0;   // 64-bit entry point; RIP at boot
  uint64_t load_start = 0;  // lowest byte written
  uint64_t load_end = 0;    // first byte past what the kernel needs (bss, init_size)
  KernelKind kind = KernelKind::Elf;
  std::vector<uint8_t> setup_header;  // bzImage: header bytes for the zero page; ELF: empty
  uint64_t initrd_addr_max = 0;       // highest byte an initrd may occupy
};

// Detects the format and loads it; anything else is an error.
Result<LoadedKernel> load_kernel(GuestMemory& mem, std::span<const uint8_t> image);

}  // namespace vicvmm::boot
