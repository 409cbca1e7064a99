#include "vmm/boot/gdt.h"

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

uint8_t bit(uint64_t v, unsigned n) { return static_cast<uint8_t>((v >> n) & 1); }

}  // namespace

Segment segment_from_gdt(uint64_t entry, unsigned index) {
  Segment s;
  s.base = ((entry >> 16) & 0xff'ffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t raw_limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.selector = static_cast<uint16_t>(index * 8);
  s.type = static_cast<uint8_t>((entry >> 40) & 0xf);
  s.s = bit(entry, 44);
  s.dpl = static_cast<uint8_t>((entry >> 45) & 3);
  s.present = bit(entry, 47);
  s.avl = bit(entry, 52);
  s.l = bit(entry, 53);
  s.db = bit(entry, 54);
  s.g = bit(entry, 55);
  // KVM takes the byte-granular limit the CPU derives from G (SVM even
  // recomputes G from it), so scale page-granular limits here.
  s.limit = s.g ? (raw_limit << 12) | 0xfff : raw_limit;
  return s;
}

Result<> write_gdt(GuestMemory& mem) {
  auto r = mem.write_obj(kGdtGpa, kBootGdt);
  if (!r) return with_context(r.error(), "boot GDT");
  r = mem.fill(kIdtGpa, 0, kIdtLimit + 1);
  if (!r) return with_context(r.error(), "boot IDT");
  return {};
}

}  // namespace vicvmm::boot
