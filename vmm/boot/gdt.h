// The boot GDT (and an empty IDT) and its segments in register form.
//
// Layout as Firecracker's: null, 64-bit code, data, TSS at indexes 0..3
// (selectors 0x08 code, 0x10 data, 0x18 TSS). The kernel installs its own GDT
// within its first instructions, so these only have to be valid at entry.
#pragma once

#include <array>
#include <cstdint>

#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"

namespace vicvmm::boot {

// Packs a descriptor. `flags` holds the access byte (bits 7..0: P, DPL, S,
// type) and the flag nibble (bits 15..12: G, D/B, L, AVL); `limit` is 20 bits.
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff00'0000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
         ((uint64_t{limit} & 0x000f'0000) << 32) | ((uint64_t{base} & 0x00ff'ffff) << 16) |
         (uint64_t{limit} & 0xffff);
}

inline constexpr unsigned kGdtNull = 0;
inline constexpr unsigned kGdtCode = 1;
inline constexpr unsigned kGdtData = 2;
inline constexpr unsigned kGdtTss = 3;

inline constexpr std::array<uint64_t, 4> kBootGdt = {
    gdt_entry(0, 0, 0),             // null
    gdt_entry(0xa09b, 0, 0xfffff),  // code: G, L (64-bit), P, S, execute/read, accessed
    gdt_entry(0xc093, 0, 0xfffff),  // data: G, D/B, P, S, read/write, accessed
    gdt_entry(0x808b, 0, 0xfffff),  // TSS: G, P, 64-bit busy TSS
};

inline constexpr uint16_t kGdtLimit = sizeof(kBootGdt) - 1;
inline constexpr uint16_t kIdtLimit = 16 - 1;  // one null 16-byte gate: every vector faults

// A segment register as KVM's kvm_segment wants it, without <linux/kvm.h>.
struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;  // in bytes (scaled by 4 KiB when g is set), as KVM expects
  uint16_t selector = 0;
  uint8_t type = 0;
  uint8_t present = 0;
  uint8_t dpl = 0;
  uint8_t db = 0;
  uint8_t s = 0;
  uint8_t l = 0;
  uint8_t g = 0;
  uint8_t avl = 0;
};

// Decodes descriptor `entry` loaded through selector index * 8 (RPL 0).
Segment segment_from_gdt(uint64_t entry, unsigned index);

// Writes kBootGdt at kGdtGpa and a zeroed IDT at kIdtGpa.
Result<> write_gdt(GuestMemory& mem);

}  // namespace vicvmm::boot
