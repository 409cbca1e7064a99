// A virtio-mmio device plugged into one VM: its register window on the MMIO
// bus, one ioeventfd per queue (kicks go to the I/O thread, not through a
// vCPU exit) and an irqfd into the in-kernel IOAPIC. Without an irqchip
// (tiny test guests) kicks exit through the bus and no interrupt is raised.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vmm/devices/bus.h"
#include "vmm/io/event_loop.h"
#include "vmm/kvm/vm.h"
#include "vmm/virtio/mmio.h"

namespace vicvmm::virtio {

// Where virtio-mmio windows go: above the doorbell page, below the IOAPIC.
inline constexpr uint64_t kMmioBase = 0xd000'0000ull;
inline constexpr uint32_t kFirstIrq = 5;   // ISA IRQs 0-4 are timer, keyboard, cascade, COM2, COM1
inline constexpr uint32_t kMaxSlots = 16;  // IOAPIC pins 5..20

class MmioSlot {
 public:
  // Plugs `device` in as slot `index` (window kMmioBase + index * 4 KiB,
  // IRQ kFirstIrq + index).
  static Result<std::unique_ptr<MmioSlot>> attach(Vm& vm, Bus& mmio_bus, GuestMemory& mem, EventLoop* loop,
                                                  std::shared_ptr<Device> device, uint32_t index);
  ~MmioSlot();

  // The I/O thread no longer serves this slot (returns once a running
  // handler is done); kicks stay in their eventfds. Before a capture.
  void stop_io();

  MmioTransport& transport() { return *transport_; }
  uint64_t base() const { return base_; }
  uint32_t irq() const { return irq_; }
  // The kernel command-line word that announces this device.
  std::string cmdline_word() const;

 private:
  MmioSlot() = default;

  Vm* vm_ = nullptr;
  EventLoop* loop_ = nullptr;
  uint64_t base_ = 0;
  uint32_t irq_ = 0;
  std::shared_ptr<MmioTransport> transport_;
  UniqueFd irqfd_;
  std::vector<UniqueFd> kicks_;
  std::vector<uint64_t> tokens_;
};

}  // namespace vicvmm::virtio
