#include "vmm/boot/x86_state.h"

#include <algorithm>
#include <bit>

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

constexpr uint64_t kRflagsReserved1 = 1u << 1;

kvm_segment boot_segment(unsigned index) { return to_kvm_segment(segment_from_gdt(kBootGdt[index], index)); }

// Replaces bits [lo, lo + width) of v with `field` (truncated to width).
uint32_t set_bits(uint32_t v, unsigned lo, unsigned width, uint32_t field) {
  uint32_t mask = ((1u << width) - 1u) << lo;  // width < 32 at every call
  return (v & ~mask) | ((field << lo) & mask);
}

// Bits an APIC id needs to tell `n` CPUs apart (x2APIC level shift).
uint32_t id_bits(unsigned n) { return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1)); }

void patch_leaf1(kvm_cpuid_entry2& e, unsigned vcpu_index, unsigned ncpus) {
  e.ebx = set_bits(e.ebx, 24, 8, vcpu_index);          // initial APIC id
  e.ebx = set_bits(e.ebx, 16, 8, std::min(ncpus, 255u));  // logical processors per package
  e.ecx |= kCpuidHypervisorBit;
  e.edx = ncpus > 1 ? (e.edx | kCpuidHttBit) : (e.edx & ~kCpuidHttBit);
}

void patch_leaf4(kvm_cpuid_entry2& e, unsigned ncpus) {
  uint32_t cache_type = e.eax & 0x1f;
  if (cache_type == 0) return;  // no more caches
  uint32_t level = (e.eax >> 5) & 0x7;
  e.eax = set_bits(e.eax, 26, 6, std::min(ncpus, 64u) - 1);                    // cores per package - 1
  e.eax = set_bits(e.eax, 14, 12, level >= 3 ? std::min(ncpus, 4096u) - 1 : 0);  // threads sharing - 1
}

// Extended topology: level 0 = SMT (1 thread per core), level 1 = core.
void patch_topology_leaf(kvm_cpuid_entry2& e, unsigned vcpu_index, unsigned ncpus) {
  constexpr uint32_t kLevelSmt = 1, kLevelCore = 2;
  e.edx = vcpu_index;  // x2APIC id
  switch (e.index) {
    case 0:
      e.eax = 0;
      e.ebx = 1;
      e.ecx = (kLevelSmt << 8) | e.index;
      break;
    case 1:
      e.eax = id_bits(ncpus);
      e.ebx = ncpus;
      e.ecx = (kLevelCore << 8) | e.index;
      break;
    default:  // invalid level: ends the enumeration
      e.eax = 0;
      e.ebx = 0;
      e.ecx = e.index & 0xff;
      break;
  }
}

}  // namespace

kvm_segment to_kvm_segment(const Segment& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  k.avl = s.avl;
  k.unusable = s.present ? 0 : 1;
  return k;
}

void long_mode_sregs(kvm_sregs& sregs, uint64_t cr3) {
  sregs.cs = boot_segment(kGdtCode);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = boot_segment(kGdtData);
  sregs.tr = boot_segment(kGdtTss);
  sregs.gdt.base = kGdtGpa;
  sregs.gdt.limit = kGdtLimit;
  sregs.idt.base = kIdtGpa;
  sregs.idt.limit = kIdtLimit;
  // Explicit values, not ORed into the reset state: KVM resets CR0 with
  // CD|NW (caches off), which the kernel would inherit until it reloads CR0.
  sregs.cr0 = kCr0Pe | kCr0Et | kCr0Ne | kCr0Pg;
  sregs.cr3 = cr3;
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
}

void boot_regs(kvm_regs& regs, uint64_t entry, uint64_t boot_params) {
  regs = kvm_regs{};
  regs.rip = entry;
  regs.rsi = boot_params;
  regs.rsp = kBootStackGpa;
  regs.rbp = kBootStackGpa;
  regs.rflags = kRflagsReserved1;
}

std::vector<kvm_msr_entry> boot_msrs() {
  auto msr = [](uint32_t index, uint64_t value) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = value;
    return e;
  };
  return {
      msr(kMsrSysenterCs, 0),
      msr(kMsrSysenterEsp, 0),
      msr(kMsrSysenterEip, 0),
      msr(kMsrStar, 0),
      msr(kMsrLstar, 0),
      msr(kMsrCstar, 0),
      msr(kMsrSyscallMask, 0),
      msr(kMsrKernelGsBase, 0),
      msr(kMsrMiscEnable, kMiscEnableFastString),
      // Fixed-range MTRRs stay off: enabled but unprogrammed they would make
      // the first MiB uncacheable.
      msr(kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack),
  };
}

std::vector<kvm_cpuid_entry2> patch_cpuid(std::vector<kvm_cpuid_entry2> entries, unsigned vcpu_index,
                                          unsigned ncpus) {
  ncpus = std::max(ncpus, 1u);
  for (kvm_cpuid_entry2& e : entries) {
    switch (e.function) {
      case 0x1: patch_leaf1(e, vcpu_index, ncpus); break;
      case 0x4: patch_leaf4(e, ncpus); break;
      case 0xb:
      case 0x1f: patch_topology_leaf(e, vcpu_index, ncpus); break;
      default: break;
    }
  }
  return entries;
}

}  // namespace vicvmm::boot
