#include "vmm/memory/page_walk.h"

#include <algorithm>

namespace vicvmm {

namespace {
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kHuge = 1ull << 7;
constexpr uint64_t kAddrMask = 0x000f'ffff'ffff'f000ull;  // bits 51:12
}  // namespace

Result<uint64_t> translate_gva(const GuestMemory& mem, uint64_t cr3, uint64_t gva) {
  uint64_t table = cr3 & kAddrMask;
  // Levels 4..1: PML4, PDPT, PD, PT; shifts 39, 30, 21, 12.
  for (int level = 4; level >= 1; --level) {
    int shift = 12 + 9 * (level - 1);
    uint64_t index = (gva >> shift) & 0x1ff;
    VIC_ASSIGN(uint64_t entry, mem.read_obj<uint64_t>(table + index * 8));
    if (!(entry & kPresent)) return err("page walk: {:#x} not mapped (level {} entry {:#x})", gva, level, entry);
    // A PS bit at PDPT (1 GiB) or PD (2 MiB) level ends the walk early.
    if (level == 1 || ((level == 2 || level == 3) && (entry & kHuge))) {
      uint64_t page_mask = (1ull << shift) - 1;
      return ((entry & kAddrMask) & ~page_mask) | (gva & page_mask);
    }
    table = entry & kAddrMask;
  }
  return err("page walk: {:#x}: unreachable", gva);
}

Result<size_t> read_gva(const GuestMemory& mem, uint64_t cr3, uint64_t gva, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    auto gpa = translate_gva(mem, cr3, gva + done);
    if (!gpa) {
      if (done == 0) return tl::unexpected(gpa.error());
      break;
    }
    size_t in_page = 4096 - ((gva + done) & 0xfff);
    size_t n = std::min(in_page, out.size() - done);
    if (!mem.read(*gpa, out.subspan(done, n))) break;
    done += n;
  }
  return done;
}

}  // namespace vicvmm
