// Complete architectural state of a vCPU and of a VM's in-kernel devices,
// as plain values: what a template captures and a clone restores.
#pragma once

#include <linux/kvm.h>

#include <vector>

#include "vmm/kvm/kvm_abi.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"

namespace vicvmm {

struct VcpuState {
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_fpu fpu{};
  kvm_abi::Xsave xsave{};
  kvm_xcrs xcrs{};
  kvm_lapic_state lapic{};
  kvm_mp_state mp_state{};
  kvm_vcpu_events events{};
  kvm_debugregs debugregs{};
  std::vector<kvm_msr_entry> msrs;  // includes kvmclock and TSC
};

struct VmState {
  kvm_irqchip pic_master{}, pic_slave{}, ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

// MSRs worth carrying from a template to a clone: every MSR KVM lists.
Result<std::vector<uint32_t>> saved_msr_indices(const Kvm& kvm);

// Before saving, a vCPU that stopped on an I/O or MMIO exit must re-enter
// KVM once with immediate_exit so KVM completes that instruction.
Result<> complete_pending_io(Vcpu& vcpu);

Result<VcpuState> save_vcpu(const Vcpu& vcpu, const std::vector<uint32_t>& msr_indices);
// Order matters: sregs (APIC base) before the LAPIC, the LAPIC before MSRs
// (TSC deadline), events last.
Result<> restore_vcpu(Vcpu& vcpu, const VcpuState& s);

// Moves the LAPIC TSC deadline so that the time left until it equals what
// was left when `s` was captured, measured on the vCPU's current TSC. Without
// it a clone whose TSC did not follow the saved value (nested PVM hosts, or
// a shell restored ahead of time) takes a timer interrupt on its first
// instruction. No-op when the saved deadline was disarmed.
Result<> rebase_tsc_deadline(Vcpu& vcpu, const VcpuState& s);

Result<VmState> save_vm(const Vm& vm, bool with_pit = true);  // without: `pit` stays zeroed
// with_pit: the VM has an in-kernel PIT to restore (clones may not).
Result<> restore_vm(Vm& vm, const VmState& s, bool with_pit = true);

}  // namespace vicvmm
