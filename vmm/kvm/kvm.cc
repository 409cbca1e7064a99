#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include "vmm/kvm/kvm_abi.h"

namespace vicvmm {

Result<Kvm> Kvm::open(const std::string& path) {
  Kvm kvm;
  kvm.fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm.fd_) {
    int e = errno;
    if (e == ENOENT)
      return err("{}: not found: this host has no KVM (enable virtualization or load the kvm module)", path);
    if (e == EACCES || e == EPERM)
      return err("{}: permission denied: run as root or join the group that owns it", path);
    errno = e;
    return sys_err("{}: cannot open", path);
  }
  int version = ioctl(kvm.fd(), KVM_GET_API_VERSION, 0);
  if (version < 0) return sys_err("{}: not a KVM device (KVM_GET_API_VERSION)", path);
  if (version != KVM_API_VERSION)
    return err("{}: KVM API version {} (expected {})", path, version, KVM_API_VERSION);
  int sz = ioctl(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (sz <= 0) return sys_err("{}: KVM_GET_VCPU_MMAP_SIZE", path);
  kvm.vcpu_mmap_size_ = static_cast<size_t>(sz);
  return kvm;
}

int Kvm::check_extension(int cap) const {
  int r = ioctl(fd(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<> Kvm::require(int cap, const char* name) const {
  if (check_extension(cap) <= 0) return err("KVM: host lacks required capability {}", name);
  return {};
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  std::call_once(cache_->cpuid_once, [this] { cache_->cpuid = query_supported_cpuid(); });
  return cache_->cpuid;
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::query_supported_cpuid() const {
  // Grow until the kernel stops answering E2BIG.
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(sizeof(kvm_abi::CpuidHeader) + n * sizeof(kvm_cpuid_entry2));
    auto* hdr = reinterpret_cast<kvm_abi::CpuidHeader*>(buf.data());
    hdr->nent = n;
    if (ioctl(fd(), kvm_abi::kGetSupportedCpuid, buf.data()) == 0) {
      auto* first = reinterpret_cast<kvm_cpuid_entry2*>(buf.data() + sizeof(*hdr));
      return std::vector<kvm_cpuid_entry2>(first, first + hdr->nent);
    }
    if (errno != E2BIG) return sys_err("KVM_GET_SUPPORTED_CPUID");
  }
  return err("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
  kvm_abi::MsrListHeader probe{0};
  if (ioctl(fd(), kvm_abi::kGetMsrIndexList, &probe) < 0 && errno != E2BIG)
    return sys_err("KVM_GET_MSR_INDEX_LIST");
  std::vector<uint32_t> buf(1 + probe.nmsrs);
  buf[0] = probe.nmsrs;
  if (ioctl(fd(), kvm_abi::kGetMsrIndexList, buf.data()) < 0) return sys_err("KVM_GET_MSR_INDEX_LIST");
  return std::vector<uint32_t>(buf.begin() + 1, buf.begin() + 1 + buf[0]);
}

static Result<> probe_base_capabilities(const Kvm& kvm) {
  struct Need { int cap; const char* name; };
  static constexpr Need kNeeds[] = {
      {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
      {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
      {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
      {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
      {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
      {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
      {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
      {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
  };
  for (const auto& n : kNeeds) VIC_TRY(kvm.require(n.cap, n.name));
  return {};
}

}  // namespace vicvmm

namespace vicvmm {
Result<> require_base_capabilities(const Kvm& kvm) {
  std::call_once(kvm.cache_->caps_once, [&] { kvm.cache_->caps = probe_base_capabilities(kvm); });
  return kvm.cache_->caps;
}
}  // namespace vicvmm
