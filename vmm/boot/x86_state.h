// Initial vCPU state for entering a kernel in 64-bit mode, as pure functions
// over KVM's structs (the caller does the ioctls).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "vmm/boot/gdt.h"

namespace vicvmm::boot {

// MSR numbers set by boot_msrs().
inline constexpr uint32_t kMsrSysenterCs = 0x174;
inline constexpr uint32_t kMsrSysenterEsp = 0x175;
inline constexpr uint32_t kMsrSysenterEip = 0x176;
inline constexpr uint32_t kMsrMiscEnable = 0x1a0;
inline constexpr uint32_t kMsrMtrrDefType = 0x2ff;
inline constexpr uint32_t kMsrStar = 0xc000'0081;
inline constexpr uint32_t kMsrLstar = 0xc000'0082;
inline constexpr uint32_t kMsrCstar = 0xc000'0083;
inline constexpr uint32_t kMsrSyscallMask = 0xc000'0084;
inline constexpr uint32_t kMsrKernelGsBase = 0xc000'0102;

inline constexpr uint64_t kMiscEnableFastString = 1u << 0;
inline constexpr uint64_t kMtrrEnable = 1u << 11;
inline constexpr uint64_t kMtrrTypeWriteBack = 6;

inline constexpr uint64_t kCr0Pe = 1u << 0;
inline constexpr uint64_t kCr0Et = 1u << 4;
inline constexpr uint64_t kCr0Ne = 1u << 5;
inline constexpr uint64_t kCr0Pg = 1u << 31;
inline constexpr uint64_t kCr4Pae = 1u << 5;
inline constexpr uint64_t kEferLme = 1u << 8;
inline constexpr uint64_t kEferLma = 1u << 10;

inline constexpr uint32_t kCpuidHypervisorBit = 1u << 31;  // leaf 1 ECX
inline constexpr uint32_t kCpuidHttBit = 1u << 28;         // leaf 1 EDX

kvm_segment to_kvm_segment(const Segment& s);

// Long mode with paging: CS/DS/ES/FS/GS/SS/TR from the boot GDT, GDTR/IDTR
// at kGdtGpa/kIdtGpa, CR0 = PE|ET|NE|PG (caches on), CR3 = cr3, CR4 = PAE,
// EFER = LME|LMA. Everything else (apic_base, LDT, CR2, CR8, pending
// interrupts) keeps what `sregs` had, normally KVM_GET_SREGS' values.
void long_mode_sregs(kvm_sregs& sregs, uint64_t cr3);

// All registers zero except RIP = entry, RSI = boot_params (zero page, as the
// 64-bit boot protocol wants), RSP = RBP = kBootStackGpa, RFLAGS = 2 (bit 1 is
// reserved-one; IF clear).
void boot_regs(kvm_regs& regs, uint64_t entry, uint64_t boot_params);

// MSRs with a defined boot value: SYSENTER_*, STAR/LSTAR/CSTAR/SYSCALL_MASK,
// KERNEL_GS_BASE = 0, MISC_ENABLE = fast strings, MTRRdefType = enabled with
// write-back default (fixed ranges off). TSC is left to KVM.
std::vector<kvm_msr_entry> boot_msrs();

// The CPUID table for vCPU `vcpu_index` of `ncpus`, from KVM_GET_SUPPORTED_CPUID's
// entries: one package, one thread per core, APIC id = vcpu_index. Leaf 1:
// initial APIC id, logical count, HTT when ncpus > 1, hypervisor bit. Leaf 4:
// cores per package and threads sharing each cache. Leaves 0xb/0x1f: x2APIC
// id and SMT/core levels. Everything else (0x40000000 signature included)
// is returned as given.
std::vector<kvm_cpuid_entry2> patch_cpuid(std::vector<kvm_cpuid_entry2> supported, unsigned vcpu_index,
                                          unsigned ncpus);

}  // namespace vicvmm::boot
