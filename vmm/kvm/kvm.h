// The KVM system handle (/dev/kvm): API version, capabilities, host-wide
// queries. One per process is enough; VMs are created from it.
#pragma once

#include <linux/kvm.h>

#include <memory>
#include <mutex>
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

  // Asked once per Kvm, then served from a cache (clones ask on every create).
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  Result<std::vector<uint32_t>> msr_index_list() const;

 private:
  Result<std::vector<kvm_cpuid_entry2>> query_supported_cpuid() const;

  UniqueFd fd_;
  size_t vcpu_mmap_size_ = 0;
  // Filled on first use; shared so that Kvm stays movable.
  struct Cache {
    std::once_flag cpuid_once;
    Result<std::vector<kvm_cpuid_entry2>> cpuid;
    std::once_flag caps_once;
    Result<> caps;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
  friend Result<> require_base_capabilities(const Kvm& kvm);
};

// Capabilities every vicvmm VM needs, probed once at start.
Result<> require_base_capabilities(const Kvm& kvm);

}  // namespace vicvmm
