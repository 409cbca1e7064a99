// One virtual CPU: its fd, the shared kvm_run page, and typed accessors for
// every piece of architectural state (used by boot and by snapshots).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "vmm/kvm/kvm_abi.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

class Vcpu {
 public:
  static Result<Vcpu> adopt(UniqueFd fd, uint32_t id, size_t mmap_size);

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_state() const { return static_cast<kvm_run*>(run_.get()); }

  // One KVM_RUN. Returns false (not an error) when interrupted by a signal or
  // by immediate_exit, so the caller can look at why it was asked to stop.
  Result<bool> run();

  Result<kvm_regs> get_regs() const;
  Result<> set_regs(const kvm_regs& r);
  Result<kvm_sregs> get_sregs() const;
  Result<> set_sregs(const kvm_sregs& s);
  Result<kvm_fpu> get_fpu() const;
  Result<> set_fpu(const kvm_fpu& f);
  Result<kvm_lapic_state> get_lapic() const;
  Result<> set_lapic(const kvm_lapic_state& l);
  Result<kvm_mp_state> get_mp_state() const;
  Result<> set_mp_state(const kvm_mp_state& m);
  Result<kvm_vcpu_events> get_events() const;
  Result<> set_events(const kvm_vcpu_events& e);
  Result<kvm_abi::Xsave> get_xsave() const;
  Result<> set_xsave(const kvm_abi::Xsave& x);
  Result<kvm_xcrs> get_xcrs() const;
  Result<> set_xcrs(const kvm_xcrs& x);
  Result<kvm_debugregs> get_debugregs() const;
  Result<> set_debugregs(const kvm_debugregs& d);

  Result<> set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
  Result<> set_msrs(const std::vector<kvm_msr_entry>& msrs);
  // Reads the given MSR indices; entries KVM does not know are dropped.
  Result<std::vector<kvm_msr_entry>> get_msrs(const std::vector<uint32_t>& indices) const;

 private:
  UniqueFd fd_;
  Mapping run_;
  uint32_t id_ = 0;
};

}  // namespace vicvmm
