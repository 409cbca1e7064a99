#include "vmm/boot/kernel_loader.h"

#include "vmm/boot/bzimage_loader.h"
#include "vmm/boot/elf_loader.h"

namespace vicvmm::boot {

Result<LoadedKernel> load_kernel(GuestMemory& mem, std::span<const uint8_t> image) {
  if (is_elf(image)) return load_elf_kernel(mem, image);
  if (is_bzimage(image)) return load_bzimage_kernel(mem, image);
  return err("kernel: not a Linux kernel image (neither ELF nor bzImage)");
}

}  // namespace vicvmm::boot
