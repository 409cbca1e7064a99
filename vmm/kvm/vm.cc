#include "vmm/kvm/vm.h"

#include <sys/ioctl.h>

namespace vicvmm {

Result<Vm> Vm::create(const Kvm& kvm) {
  Vm vm;
  // Retry on EINTR: KVM_CREATE_VM can be interrupted while the kernel sets up.
  int fd;
  do fd = ioctl(kvm.fd(), KVM_CREATE_VM, 0);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return sys_err("KVM_CREATE_VM");
  vm.fd_ = UniqueFd(fd);
  return vm;
}

Result<> Vm::set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
    return sys_err("KVM_SET_USER_MEMORY_REGION slot {} at {:#x} size {:#x}", slot, gpa, size);
  return {};
}

Result<> Vm::set_tss_and_identity_map(uint64_t tss_gpa) {
  if (ioctl(fd(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(tss_gpa)) < 0)
    return sys_err("KVM_SET_TSS_ADDR {:#x}", tss_gpa);
  uint64_t ident = tss_gpa - 0x1000;
  if (ioctl(fd(), KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
    return sys_err("KVM_SET_IDENTITY_MAP_ADDR {:#x}", ident);
  return {};
}

Result<> Vm::create_irqchip() {
  if (ioctl(fd(), KVM_CREATE_IRQCHIP, 0) < 0) return sys_err("KVM_CREATE_IRQCHIP");
  return {};
}

Result<> Vm::create_pit() {
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (ioctl(fd(), KVM_CREATE_PIT2, &pit) < 0) return sys_err("KVM_CREATE_PIT2");
  return {};
}

Result<> Vm::irq_line(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  if (ioctl(fd(), KVM_IRQ_LINE, &l) < 0) return sys_err("KVM_IRQ_LINE irq {}", irq);
  return {};
}

Result<> Vm::set_ioeventfd(uint64_t gpa, uint32_t len, uint64_t datamatch, int eventfd, bool assign) {
  kvm_ioeventfd a{};
  a.addr = gpa;
  a.len = len;
  a.datamatch = datamatch;
  a.fd = eventfd;
  a.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN);
  if (ioctl(fd(), KVM_IOEVENTFD, &a) < 0)
    return sys_err("KVM_IOEVENTFD {} at {:#x} (value {})", assign ? "assign" : "deassign", gpa, datamatch);
  return {};
}

Result<> Vm::set_irqfd(int eventfd, uint32_t gsi, bool assign) {
  kvm_irqfd a{};
  a.fd = static_cast<uint32_t>(eventfd);
  a.gsi = gsi;
  a.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN;
  if (ioctl(fd(), KVM_IRQFD, &a) < 0) return sys_err("KVM_IRQFD {} gsi {}", assign ? "assign" : "deassign", gsi);
  return {};
}

Result<kvm_clock_data> Vm::get_clock() const {
  kvm_clock_data c{};
  if (ioctl(fd(), KVM_GET_CLOCK, &c) < 0) return sys_err("KVM_GET_CLOCK");
  return c;
}

Result<> Vm::set_clock(const kvm_clock_data& c) {
  kvm_clock_data copy = c;
  copy.flags = 0;  // only the clock value is restorable everywhere
  if (ioctl(fd(), KVM_SET_CLOCK, &copy) < 0) return sys_err("KVM_SET_CLOCK");
  return {};
}

Result<Vcpu> Vm::create_vcpu(const Kvm& kvm, uint32_t id) {
  int fd = ioctl(this->fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return sys_err("KVM_CREATE_VCPU {}", id);
  return Vcpu::adopt(UniqueFd(fd), id, kvm.vcpu_mmap_size());
}

}  // namespace vicvmm
