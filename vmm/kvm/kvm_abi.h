// KVM ioctl numbers for structs that end in a flexible array.
//
// Debian 12's linux/kvm.h (6.1) declares those arrays with __DECLARE_FLEX_ARRAY,
// which a C++ compiler sizes differently from C: sizeof(kvm_cpuid2) is 12 in
// C++ but 8 in C. The ioctl number encodes the size, so the stock macros are
// wrong in C++ and fail with EINVAL. These are rebuilt from the C layout and
// pinned to the numbers the kernel expects.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace vicvmm::kvm_abi {

struct CpuidHeader { uint32_t nent; uint32_t padding; };   // struct kvm_cpuid2, as in C
struct MsrsHeader { uint32_t nmsrs; uint32_t pad; };       // struct kvm_msrs, as in C
struct MsrListHeader { uint32_t nmsrs; };                  // struct kvm_msr_list, as in C
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(MsrListHeader) == 4);

// struct kvm_xsave without its trailing flexible `extra[]`, which C++ will not
// let us hold by value (e.g. inside a Result). The legacy 4 KiB area is what
// KVM_GET_XSAVE/KVM_SET_XSAVE transfer.
struct Xsave { uint32_t region[1024]; };
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, Xsave);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, Xsave);
static_assert(kGetXsave == 0x9000aea4 && kSetXsave == 0x5000aea5);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, CpuidHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);

// The values the kernel's C headers produce (checked against a C build).
static_assert(kGetSupportedCpuid == 0xc008ae05);
static_assert(kSetCpuid2 == 0x4008ae90);
static_assert(kGetCpuid2 == 0xc008ae91);
static_assert(kGetMsrs == 0xc008ae88);
static_assert(kSetMsrs == 0x4008ae89);
static_assert(kGetMsrIndexList == 0xc004ae02);

// Entry layouts have no flexible arrays and agree between C and C++.
static_assert(sizeof(kvm_cpuid_entry2) == 40);
static_assert(sizeof(kvm_msr_entry) == 16);

}  // namespace vicvmm::kvm_abi
