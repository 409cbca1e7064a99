#include <algorithm>
#include <cstdint>
#include <vector>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/x86_state.h"

using namespace vicvmm::boot;

namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& v, uint32_t function, uint32_t index = 0) {
  auto it = std::find_if(v.begin(), v.end(), [&](const kvm_cpuid_entry2& e) {
    return e.function == function && e.index == index;
  });
  REQUIRE(it != v.end());
  return *it;
}

// Roughly what KVM_GET_SUPPORTED_CPUID reports on a host.
std::vector<kvm_cpuid_entry2> supported() {
  return {
      leaf(0x0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),
      leaf(0x1, 0, 0x000906ea, 0xff100800, 0x7ffafbff, 0xbfebfbff),  // host APIC id 0xff, count 16
      leaf(0x4, 0, 0x1c004121, 0x01c0003f, 0x3f, 0),                  // L1d
      leaf(0x4, 1, 0x1c004122, 0x01c0003f, 0x3f, 0),                  // L1i
      leaf(0x4, 2, 0x1c004143, 0x00c0003f, 0x3ff, 0),                 // L2
      leaf(0x4, 3, 0x1c03c163, 0x02c0003f, 0x2fff, 6),                // L3
      leaf(0x4, 4, 0, 0, 0, 0),                                       // end
      leaf(0xb, 0, 1, 2, 0x100, 7),
      leaf(0xb, 1, 4, 16, 0x201, 7),
      leaf(0xb, 2, 0, 0, 2, 7),
      leaf(0x1f, 0, 1, 2, 0x100, 7),
      leaf(0x1f, 1, 4, 16, 0x201, 7),
      leaf(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),  // "KVMKVMKVM"
      leaf(0x80000000, 0, 0x80000008, 0, 0, 0),
  };
}

}  // namespace

TEST_CASE("x86 state: long-mode sregs", "[x86_state]") {
  kvm_sregs s{};
  s.apic_base = 0xfee00900;
  s.cr0 = 0x60000010;  // KVM's reset value: CD | NW | ET
  s.cr8 = 3;
  long_mode_sregs(s, 0x9000);

  CHECK(s.cr3 == 0x9000);
  CHECK(s.cr0 == (kCr0Pe | kCr0Et | kCr0Ne | kCr0Pg));
  CHECK((s.cr0 & 0x60000000) == 0);  // caches enabled
  CHECK(s.cr4 == kCr4Pae);
  CHECK(s.efer == (kEferLme | kEferLma));
  CHECK(s.apic_base == 0xfee00900);  // kept
  CHECK(s.cr8 == 3);                 // kept

  CHECK(s.gdt.base == kGdtGpa);
  CHECK(s.gdt.limit == 31);
  CHECK(s.idt.base == kIdtGpa);
  CHECK(s.idt.limit == 15);

  CHECK(s.cs.selector == 0x08);
  CHECK(s.cs.l == 1);
  CHECK(s.cs.db == 0);
  CHECK(s.cs.type == 0xb);
  CHECK(s.cs.present == 1);
  CHECK(s.cs.s == 1);
  CHECK(s.cs.unusable == 0);
  for (const kvm_segment* seg : {&s.ds, &s.es, &s.fs, &s.gs, &s.ss}) {
    CHECK(seg->selector == 0x10);
    CHECK(seg->type == 0x3);
    CHECK(seg->base == 0);
    CHECK(seg->limit == 0xffffffffu);
    CHECK(seg->g == 1);
    CHECK(seg->db == 1);
    CHECK(seg->present == 1);
  }
  CHECK(s.tr.selector == 0x18);
  CHECK(s.tr.type == 0xb);
  CHECK(s.tr.s == 0);
}

TEST_CASE("x86 state: boot registers", "[x86_state]") {
  kvm_regs r{};
  r.rax = 0x1234;
  boot_regs(r, 0x1000200, kBootParamsGpa);
  CHECK(r.rip == 0x1000200);
  CHECK(r.rsi == 0x7000);
  CHECK(r.rsp == kBootStackGpa);
  CHECK(r.rbp == kBootStackGpa);
  CHECK(r.rflags == 2);
  CHECK(r.rax == 0);
}

TEST_CASE("x86 state: boot MSRs", "[x86_state]") {
  auto msrs = boot_msrs();
  auto value = [&](uint32_t index) -> int64_t {
    for (const auto& m : msrs)
      if (m.index == index) return static_cast<int64_t>(m.data);
    return -1;
  };
  CHECK(value(kMsrSysenterCs) == 0);
  CHECK(value(kMsrSysenterEsp) == 0);
  CHECK(value(kMsrSysenterEip) == 0);
  CHECK(value(kMsrStar) == 0);
  CHECK(value(kMsrLstar) == 0);
  CHECK(value(kMsrCstar) == 0);
  CHECK(value(kMsrSyscallMask) == 0);
  CHECK(value(kMsrKernelGsBase) == 0);
  CHECK(value(kMsrMiscEnable) == 1);
  CHECK(value(kMsrMtrrDefType) == 0x806);
  CHECK(value(0x10) == -1);  // TSC is left alone
  CHECK(msrs.size() == 10);
}

TEST_CASE("x86 state: cpuid patch sets APIC ids, topology and the hypervisor bit", "[x86_state]") {
  auto in = supported();
  auto out = patch_cpuid(in, 2, 4);
  REQUIRE(out.size() == in.size());

  const auto& l1 = find(out, 0x1);
  CHECK((l1.ebx >> 24) == 2);             // initial APIC id
  CHECK(((l1.ebx >> 16) & 0xff) == 4);    // logical processors
  CHECK((l1.ebx & 0xffff) == 0x0800);     // CLFLUSH size kept
  CHECK((l1.ecx & kCpuidHypervisorBit) != 0);
  CHECK((l1.edx & kCpuidHttBit) != 0);
  CHECK(l1.eax == 0x000906ea);

  for (uint32_t i = 0; i < 4; i++) {
    const auto& c = find(out, 0x4, i);
    CHECK((c.eax >> 26) == 3);  // 4 cores per package
    uint32_t sharing = ((c.eax >> 14) & 0xfff) + 1;
    CHECK(sharing == (i == 3 ? 4u : 1u));
    CHECK((c.eax & 0x3fff) == (in[2 + i].eax & 0x3fff));  // cache type/level kept
  }
  CHECK(find(out, 0x4, 4).eax == 0);

  for (uint32_t fn : {0xbu, 0x1fu}) {
    const auto& smt = find(out, fn, 0);
    CHECK(smt.eax == 0);
    CHECK(smt.ebx == 1);
    CHECK(smt.ecx == 0x100);
    CHECK(smt.edx == 2);
    const auto& core = find(out, fn, 1);
    CHECK(core.eax == 2);  // 4 CPUs: 2 id bits
    CHECK(core.ebx == 4);
    CHECK(core.ecx == 0x201);
    CHECK(core.edx == 2);
  }
  const auto& end = find(out, 0xb, 2);
  CHECK(end.ecx == 2);
  CHECK(end.ebx == 0);

  const auto& kvm = find(out, 0x40000000);
  CHECK(kvm.ebx == 0x4b4d564b);
  CHECK(kvm.ecx == 0x564b4d56);
  CHECK(kvm.edx == 0x4d);
  CHECK(find(out, 0x0).ebx == 0x756e6547);
}

TEST_CASE("x86 state: cpuid for a single vCPU clears HTT", "[x86_state]") {
  auto out = patch_cpuid(supported(), 0, 1);
  const auto& l1 = find(out, 0x1);
  CHECK((l1.ebx >> 24) == 0);
  CHECK(((l1.ebx >> 16) & 0xff) == 1);
  CHECK((l1.edx & kCpuidHttBit) == 0);
  CHECK(find(out, 0xb, 1).eax == 0);
  CHECK(find(out, 0xb, 1).ebx == 1);
  CHECK((find(out, 0x4, 3).eax >> 26) == 0);
}
