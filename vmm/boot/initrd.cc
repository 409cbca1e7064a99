#include "vmm/boot/initrd.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <string_view>

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

using namespace std::string_view_literals;

// Formats the kernel's initramfs unpacker accepts (init/initramfs.c,
// lib/decompress.c).
constexpr std::array kMagics = {
    "070701"sv,                // cpio newc
    "070702"sv,                // cpio newc with checksums
    "\x1f\x8b"sv,              // gzip
    "\x1f\x9e"sv,              // old gzip
    "BZh"sv,                   // bzip2
    "\x5d\x00\x00"sv,          // lzma
    "\xfd" "7zXZ\x00"sv,       // xz
    "\x89LZO"sv,               // lzop
    "\x02\x21\x4c\x18"sv,      // lz4 legacy (what the kernel's build writes)
    "\x04\x22\x4d\x18"sv,      // lz4 frame
    "\x28\xb5\x2f\xfd"sv,      // zstd
};

bool known_format(std::span<const uint8_t> image) {
  return std::any_of(kMagics.begin(), kMagics.end(), [&](std::string_view m) {
    return image.size() >= m.size() && std::memcmp(image.data(), m.data(), m.size()) == 0;
  });
}

Result<uint64_t> low_ram_end(const GuestMemory& mem) {
  for (const MemoryRegion& r : mem.regions())
    if (r.gpa == 0) return r.size;
  return err("initrd: guest has no RAM region at address 0");
}

uint64_t align_down(uint64_t v) { return v & ~(kPageSize - 1); }

}  // namespace

Result<InitrdPlacement> load_initrd(GuestMemory& mem, std::span<const uint8_t> image, uint64_t kernel_end,
                                    uint64_t addr_max) {
  if (image.empty()) return err("initrd: image is empty");
  if (!known_format(image)) return err("initrd: not a cpio archive or compressed image");

  VIC_ASSIGN(uint64_t top, low_ram_end(mem));
  uint64_t limit = addr_max == std::numeric_limits<uint64_t>::max() ? addr_max : addr_max + 1;
  top = std::min({top, limit, kInitrdCeiling});
  if (kernel_end > std::numeric_limits<uint64_t>::max() - (kPageSize - 1))
    return err("initrd: kernel end {:#x} is not a valid address", kernel_end);
  uint64_t bottom = align_down(kernel_end + kPageSize - 1);

  if (image.size() > top || align_down(top - image.size()) < bottom)
    return err("initrd: {} bytes do not fit between the kernel end {:#x} and {:#x}", image.size(), bottom, top);
  uint64_t gpa = align_down(top - image.size());
  auto r = mem.write(gpa, image);
  if (!r) return with_context(r.error(), "initrd");
  return InitrdPlacement{gpa, image.size()};
}

}  // namespace vicvmm::boot
