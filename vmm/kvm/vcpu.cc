#include "vmm/kvm/vcpu.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include "vmm/kvm/kvm_abi.h"

namespace vicvmm {

Result<Vcpu> Vcpu::adopt(UniqueFd fd, uint32_t id, size_t mmap_size) {
  Vcpu v;
  v.fd_ = std::move(fd);
  v.id_ = id;
  void* p = mmap(nullptr, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v.fd_.get(), 0);
  if (p == MAP_FAILED) return sys_err("vCPU {}: mapping kvm_run", id);
  v.run_ = Mapping(p, mmap_size);
  return v;
}

Result<bool> Vcpu::run() {
  if (ioctl(fd(), KVM_RUN, 0) == 0) return true;
  if (errno == EINTR || errno == EAGAIN) return false;
  return sys_err("vCPU {}: KVM_RUN", id_);
}

// Get/set pairs differ only in ioctl and type; this keeps each one a line.
template <class T>
static Result<T> get_state(int fd, unsigned long req, const char* what, uint32_t id) {
  T v{};
  if (ioctl(fd, req, &v) < 0) return sys_err("vCPU {}: {}", id, what);
  return v;
}
template <class T>
static Result<> set_state(int fd, unsigned long req, const T& v, const char* what, uint32_t id) {
  if (ioctl(fd, req, &v) < 0) return sys_err("vCPU {}: {}", id, what);
  return {};
}

#define VIC_VCPU_STATE(Name, Type, GET, SET)                                                     \
  Result<Type> Vcpu::get_##Name() const { return get_state<Type>(fd(), GET, #GET, id_); }        \
  Result<> Vcpu::set_##Name(const Type& v) { return set_state(fd(), SET, v, #SET, id_); }

VIC_VCPU_STATE(regs, kvm_regs, KVM_GET_REGS, KVM_SET_REGS)
VIC_VCPU_STATE(sregs, kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS)
VIC_VCPU_STATE(fpu, kvm_fpu, KVM_GET_FPU, KVM_SET_FPU)
VIC_VCPU_STATE(lapic, kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC)
VIC_VCPU_STATE(mp_state, kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE)
VIC_VCPU_STATE(events, kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS)
VIC_VCPU_STATE(xsave, kvm_abi::Xsave, kvm_abi::kGetXsave, kvm_abi::kSetXsave)
VIC_VCPU_STATE(xcrs, kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS)
VIC_VCPU_STATE(debugregs, kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS)
#undef VIC_VCPU_STATE

Result<> Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf(sizeof(kvm_abi::CpuidHeader) + entries.size() * sizeof(kvm_cpuid_entry2));
  auto* hdr = reinterpret_cast<kvm_abi::CpuidHeader*>(buf.data());
  hdr->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.data() + sizeof(*hdr), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (ioctl(fd(), kvm_abi::kSetCpuid2, buf.data()) < 0) return sys_err("vCPU {}: KVM_SET_CPUID2", id_);
  return {};
}

Result<> Vcpu::set_msrs(const std::vector<kvm_msr_entry>& msrs) {
  std::vector<uint8_t> buf(sizeof(kvm_abi::MsrsHeader) + msrs.size() * sizeof(kvm_msr_entry));
  auto* hdr = reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data());
  hdr->nmsrs = static_cast<uint32_t>(msrs.size());
  std::memcpy(buf.data() + sizeof(*hdr), msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
  int n = ioctl(fd(), kvm_abi::kSetMsrs, buf.data());
  if (n < 0) return sys_err("vCPU {}: KVM_SET_MSRS", id_);
  // KVM stops at the first MSR it refuses and returns how many it set.
  if (static_cast<size_t>(n) != msrs.size())
    return err("vCPU {}: KVM_SET_MSRS refused MSR {:#x}", id_, msrs[static_cast<size_t>(n)].index);
  return {};
}

Result<std::vector<kvm_msr_entry>> Vcpu::get_msrs(const std::vector<uint32_t>& indices) const {
  std::vector<kvm_msr_entry> out;
  out.reserve(indices.size());
  // One at a time past the first refusal so that an unknown MSR only drops itself.
  size_t i = 0;
  while (i < indices.size()) {
    size_t n = indices.size() - i;
    std::vector<uint8_t> buf(sizeof(kvm_abi::MsrsHeader) + n * sizeof(kvm_msr_entry));
    auto* hdr = reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data());
    hdr->nmsrs = static_cast<uint32_t>(n);
    auto* e = reinterpret_cast<kvm_msr_entry*>(buf.data() + sizeof(*hdr));
    for (size_t k = 0; k < n; ++k) e[k].index = indices[i + k];
    int got = ioctl(fd(), kvm_abi::kGetMsrs, buf.data());
    if (got < 0) return sys_err("vCPU {}: KVM_GET_MSRS", id_);
    out.insert(out.end(), e, e + got);
    i += static_cast<size_t>(got) + 1;  // skip the refused one
  }
  return out;
}

}  // namespace vicvmm
