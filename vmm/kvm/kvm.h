// The KVM system handle (/dev/kvm): API version, capabilities, host-wide
// queries. One per process is enough; VMs are created from it.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

class Kvm {
 public:
  // Opens the device; fails with a message that says why KVM is unusable.
  static Result<Kvm> open(const std::string& path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }

  // KVM_CHECK_EXTENSION: 0 when absent, else the capability's value.
  int check_extension(int cap) const;
  // Fails naming the capability when the host lacks it.
  Result<> require(int cap, const char* name) const;

  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  Result<std::vector<uint32_t>> msr_index_list() const;

 private:
  UniqueFd fd_;
  size_t vcpu_mmap_size_ = 0;
};

// Capabilities every vicvmm VM needs, probed once at start.
Result<> require_base_capabilities(const Kvm& kvm);

}  // namespace vicvmm
