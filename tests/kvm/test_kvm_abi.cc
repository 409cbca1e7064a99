// The KVM ioctls on structs with trailing flexible arrays (HOST.md: Debian
// 12's headers give C++ the wrong ioctl numbers for them), and clean errors.
#include <algorithm>
#include <cstring>

#include "tests/kvm/harness.h"
#include "vmm/boot/x86_state.h"

using namespace vicvmm;
using namespace vicvmm::test;

namespace {

const kvm_cpuid_entry2* find_leaf(const std::vector<kvm_cpuid_entry2>& v, uint32_t function, uint32_t index = 0) {
  auto it = std::find_if(v.begin(), v.end(),
                         [&](const kvm_cpuid_entry2& e) { return e.function == function && e.index == index; });
  return it == v.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("Kvm::supported_cpuid returns entries including leaf 0", "[kvm][abi]") {
  auto cpuid = kvm().supported_cpuid();
  REQUIRE_OK(cpuid);
  REQUIRE(!cpuid->empty());
  const kvm_cpuid_entry2* leaf0 = find_leaf(*cpuid, 0);
  REQUIRE(leaf0 != nullptr);
  CHECK(leaf0->eax >= 1);  // highest basic leaf
  char vendor[13] = {};
  std::memcpy(vendor, &leaf0->ebx, 4);
  std::memcpy(vendor + 4, &leaf0->edx, 4);
  std::memcpy(vendor + 8, &leaf0->ecx, 4);
  CAPTURE(vendor, cpuid->size());
  CHECK(std::strlen(vendor) == 12);
  CHECK(find_leaf(*cpuid, 1) != nullptr);
  CHECK(find_leaf(*cpuid, 0x80000000) != nullptr);
}

TEST_CASE("Kvm::msr_index_list returns the MSRs KVM saves", "[kvm][abi]") {
  auto list = kvm().msr_index_list();
  REQUIRE_OK(list);
  CHECK(!list->empty());
  CHECK(std::find(list->begin(), list->end(), boot::kMsrLstar) != list->end());
}

TEST_CASE("Vcpu::set_cpuid, set_msrs and get_msrs work", "[kvm][abi]") {
  auto created = Machine::create(kvm(), tiny_config());
  REQUIRE_OK(created);
  Machine& m = **created;
  Vcpu& v = m.vcpu(0);

  REQUIRE(!m.supported_cpuid().empty());
  REQUIRE_OK(v.set_cpuid(boot::patch_cpuid(m.supported_cpuid(), 0, 1)));

  std::vector<kvm_msr_entry> msrs(3);
  msrs[0].index = boot::kMsrSysenterCs;
  msrs[0].data = 0x10;
  msrs[1].index = boot::kMsrLstar;
  msrs[1].data = 0xffff'ffff'8100'0000ull;
  msrs[2].index = boot::kMsrKernelGsBase;
  msrs[2].data = 0x1234'5000;
  REQUIRE_OK(v.set_msrs(msrs));

  auto got = v.get_msrs({boot::kMsrSysenterCs, boot::kMsrLstar, boot::kMsrKernelGsBase});
  REQUIRE_OK(got);
  REQUIRE(got->size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK((*got)[i].index == msrs[i].index);
    CHECK((*got)[i].data == msrs[i].data);
  }

  // The boot MSRs (what enter_long_mode sets) are all accepted.
  REQUIRE_OK(v.set_msrs(boot::boot_msrs()));
  auto lstar = v.get_msrs({boot::kMsrLstar});
  REQUIRE_OK(lstar);
  REQUIRE(lstar->size() == 1);
  CHECK((*lstar)[0].data == 0);
}

TEST_CASE("Machine::create rejects a machine with no vCPUs", "[kvm][abi]") {
  MachineConfig cfg = tiny_config();
  cfg.vcpus = 0;
  auto m = Machine::create(kvm(), cfg);
  REQUIRE_FALSE(m.has_value());
  CAPTURE(m.error().message);
  CHECK(m.error().message.find("vCPU") != std::string::npos);
}

TEST_CASE("Kvm::open on a missing device says not found", "[kvm][abi]") {
  auto k = Kvm::open("/nonexistent/kvm");
  REQUIRE_FALSE(k.has_value());
  CAPTURE(k.error().message);
  CHECK(k.error().message.find("not found") != std::string::npos);
  CHECK(k.error().message.find("/nonexistent/kvm") != std::string::npos);
}
