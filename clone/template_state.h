// Everything a clone needs besides guest memory: the paused template's vCPU,
// in-kernel device and device-model state, as plain values. Captured once
// (clone/template.h), optionally written to disk (clone/snapshot.h), and
// restored into every clone.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "vmm/devices/serial.h"
#include "vmm/host/nested_pvm.h"
#include "vmm/kvm/state.h"
#include "vmm/virtio/device_spec.h"
#include "vmm/virtio/mmio.h"

namespace vicvmm {

// One virtio device of the template, in slot order (slot i is the window
// kMmioBase + i * 4 KiB, IRQ kFirstIrq + i): what a clone opens behind it
// and the transport state it restores, so the guest driver, already probed,
// carries on with no reprobe.
struct DeviceRecord {
  virtio::DeviceSpec spec;
  virtio::TransportState transport;
};

struct TemplateState {
  HostKind host = HostKind::HardwareKvm;  // where it was captured: state is host-specific
  uint64_t mem_size = 0;                   // bytes of guest RAM (the memory file's size)
  VcpuState vcpu;                          // templates have one vCPU (HOST.md: SMP untestable here)
  VmState vm;
  SerialState serial;
  std::vector<kvm_cpuid_entry2> cpuid;     // what the template's vCPU ran with
  std::vector<DeviceRecord> devices;
};

}  // namespace vicvmm
