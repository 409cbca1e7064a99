#include "vmm/kvm/state.h"

#include <sys/ioctl.h>

namespace vicvmm {

Result<std::vector<uint32_t>> saved_msr_indices(const Kvm& kvm) {
  VIC_ASSIGN(auto all, kvm.msr_index_list());
  // Writing a wall-clock MSR makes KVM write the guest's wall_clock page:
  // one more private page per clone, for a value the guest read at boot
  // and never again (clones get the time from their mailbox).
  constexpr uint32_t kMsrKvmWallClock = 0x11, kMsrKvmWallClockNew = 0x4b564d00;
  std::erase_if(all, [](uint32_t i) { return i == kMsrKvmWallClock || i == kMsrKvmWallClockNew; });
  return all;
}

Result<> complete_pending_io(Vcpu& vcpu) {
  kvm_run* run = vcpu.run_state();
  run->immediate_exit = 1;
  auto r = vcpu.run();
  run->immediate_exit = 0;
  if (!r) return tl::unexpected(r.error());
  return {};
}

Result<VcpuState> save_vcpu(const Vcpu& v, const std::vector<uint32_t>& msr_indices) {
  VcpuState s;
  VIC_ASSIGN(s.regs, v.get_regs());
  VIC_ASSIGN(s.sregs, v.get_sregs());
  VIC_ASSIGN(s.fpu, v.get_fpu());
  VIC_ASSIGN(s.xsave, v.get_xsave());
  VIC_ASSIGN(s.xcrs, v.get_xcrs());
  VIC_ASSIGN(s.lapic, v.get_lapic());
  VIC_ASSIGN(s.mp_state, v.get_mp_state());
  VIC_ASSIGN(s.events, v.get_events());
  VIC_ASSIGN(s.debugregs, v.get_debugregs());
  VIC_ASSIGN(s.msrs, v.get_msrs(msr_indices));
  return s;
}

Result<> restore_vcpu(Vcpu& v, const VcpuState& s) {
  VIC_TRY(v.set_mp_state(s.mp_state));
  VIC_TRY(v.set_regs(s.regs));
  VIC_TRY(v.set_sregs(s.sregs));
  VIC_TRY(v.set_xsave(s.xsave));
  VIC_TRY(v.set_xcrs(s.xcrs));
  VIC_TRY(v.set_debugregs(s.debugregs));
  VIC_TRY(v.set_lapic(s.lapic));
  VIC_TRY(v.set_msrs(s.msrs));
  kvm_vcpu_events ev = s.events;
  // Restore NMI and SIPI state as captured, not just the exception.
  ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW;
  VIC_TRY(v.set_events(ev));
  return {};
}

namespace {
constexpr uint32_t kMsrTsc = 0x10, kMsrTscDeadline = 0x6e0;

const kvm_msr_entry* find_msr(const std::vector<kvm_msr_entry>& msrs, uint32_t index) {
  for (const auto& m : msrs)
    if (m.index == index) return &m;
  return nullptr;
}
}  // namespace

Result<> rebase_tsc_deadline(Vcpu& vcpu, const VcpuState& s) {
  const kvm_msr_entry* tsc = find_msr(s.msrs, kMsrTsc);
  const kvm_msr_entry* deadline = find_msr(s.msrs, kMsrTscDeadline);
  if (!tsc || !deadline || deadline->data == 0) return {};
  VIC_ASSIGN(auto now, vcpu.get_msrs({kMsrTsc}));
  if (now.empty()) return {};
  // Already-expired deadlines stay expired (due now), as they were.
  uint64_t left = deadline->data > tsc->data ? deadline->data - tsc->data : 0;
  kvm_msr_entry e{};
  e.index = kMsrTscDeadline;
  e.data = now[0].data + left;
  return vcpu.set_msrs({e});
}

namespace {
Result<kvm_irqchip> get_chip(int vm_fd, uint32_t id) {
  kvm_irqchip c{};
  c.chip_id = id;
  if (ioctl(vm_fd, KVM_GET_IRQCHIP, &c) < 0) return sys_err("KVM_GET_IRQCHIP {}", id);
  return c;
}
Result<> set_chip(int vm_fd, const kvm_irqchip& c) {
  kvm_irqchip copy = c;
  if (ioctl(vm_fd, KVM_SET_IRQCHIP, &copy) < 0) return sys_err("KVM_SET_IRQCHIP {}", c.chip_id);
  return {};
}
}  // namespace

Result<VmState> save_vm(const Vm& vm, bool with_pit) {
  VmState s;
  VIC_ASSIGN(s.pic_master, get_chip(vm.fd(), KVM_IRQCHIP_PIC_MASTER));
  VIC_ASSIGN(s.pic_slave, get_chip(vm.fd(), KVM_IRQCHIP_PIC_SLAVE));
  VIC_ASSIGN(s.ioapic, get_chip(vm.fd(), KVM_IRQCHIP_IOAPIC));
  if (with_pit && ioctl(vm.fd(), KVM_GET_PIT2, &s.pit) < 0) return sys_err("KVM_GET_PIT2");
  VIC_ASSIGN(s.clock, vm.get_clock());
  return s;
}

Result<> restore_vm(Vm& vm, const VmState& s, bool with_pit) {
  VIC_TRY(set_chip(vm.fd(), s.pic_master));
  VIC_TRY(set_chip(vm.fd(), s.pic_slave));
  VIC_TRY(set_chip(vm.fd(), s.ioapic));
  kvm_pit_state2 pit = s.pit;
  if (with_pit && ioctl(vm.fd(), KVM_SET_PIT2, &pit) < 0) return sys_err("KVM_SET_PIT2");
  VIC_TRY(vm.set_clock(s.clock));
  return {};
}

}  // namespace vicvmm
