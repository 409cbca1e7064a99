// One KVM virtual machine: memory slots, the in-kernel interrupt controllers
// and PIT, the VM clock, and vCPU creation.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

class Vm {
 public:
  static Result<Vm> create(const Kvm& kvm);

  int fd() const { return fd_.get(); }

  Result<> set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags = 0);
  // x86 needs these three pages of guest-physical space for VMX internals
  // (unused on AMD/PVM, harmless there); they must not overlap RAM or MMIO.
  Result<> set_tss_and_identity_map(uint64_t tss_gpa);
  // In-kernel PIC + IOAPIC + LAPICs, and the i8254 PIT. HOST.md: register
  // memslots before this, or the first memslot change stalls ~7 ms.
  Result<> create_irqchip();
  Result<> create_pit();
  // Drives an ISA interrupt line (in-kernel irqchip only).
  Result<> irq_line(uint32_t irq, bool level);

  // Guest writes of `len` bytes equal to `datamatch` at MMIO address `gpa`
  // signal `eventfd` instead of exiting to us (a virtqueue kick); assign
  // false takes the registration back.
  Result<> set_ioeventfd(uint64_t gpa, uint32_t len, uint64_t datamatch, int eventfd, bool assign = true);
  // A write to `eventfd` injects an edge on GSI `gsi` (in-kernel irqchip).
  Result<> set_irqfd(int eventfd, uint32_t gsi, bool assign = true);

  Result<kvm_clock_data> get_clock() const;
  Result<> set_clock(const kvm_clock_data& c);

  Result<Vcpu> create_vcpu(const Kvm& kvm, uint32_t id);

 private:
  UniqueFd fd_;
};

}  // namespace vicvmm
