// Everything vicvmm does differently on a nested "PVM" KVM host (see
// shared/HOST.md), in one place. On hardware KVM none of this is active:
// HostQuirks for HostKind::HardwareKvm adds no cmdline words and handles no exits.
#pragma once

#include <array>
#include <atomic>
#include <string>
#include <vector>

#include "vmm/host/insn.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/memory/guest_memory.h"

namespace vicvmm {

enum class HostKind { HardwareKvm, NestedPvm };

const char* host_kind_name(HostKind k);

// /sys/module/kvm_pvm marks the nested host. VICVMM_HOST=hardware|pvm
// overrides the probe (for tests and for hosts that hide the module).
HostKind detect_host_kind();

class HostQuirks {
 public:
  explicit HostQuirks(HostKind kind) : kind_(kind) {}

  HostKind kind() const { return kind_; }
  bool active() const { return kind_ == HostKind::NestedPvm; }

  // Kernel command-line words this host needs to boot Linux in reasonable
  // time: hide CPU features the emulator cannot run (CPUID setting is ignored
  // here), skip calibrations that crawl when emulated.
  std::vector<std::string> kernel_cmdline_words() const;

  // On KVM_EXIT_INTERNAL_ERROR/emulation failure: recognise the instruction
  // at RIP and perform it for the guest. Returns true when handled (resume the
  // vCPU), false when it is not ours to fix (report the exit).
  Result<bool> handle_emulation_failure(Vcpu& vcpu, const GuestMemory& mem);

  uint64_t count(AssistKind k) const { return counts_[static_cast<size_t>(k)].load(); }
  uint64_t total_assists() const;

 private:
  HostKind kind_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(AssistKind::kCount)> counts_{};
};

}  // namespace vicvmm
