// The virtio-mmio transport (virtio 1.2, 4.2, version 2 only): one 4 KiB
// register window per device on the MMIO bus, announced to Linux with
// `virtio_mmio.device=4K@BASE:IRQ` on the kernel command line.
//
// Queue notifications arrive either as MMIO writes to QueueNotify (the bus
// calls write()) or, when the VMM registered an ioeventfd for that address,
// as notify() from the I/O thread. Interrupts leave through `raise_irq`
// (an irqfd write, or a pulsed IRQ line). A queue fault puts the device into
// DEVICE_NEEDS_RESET with a configuration-change interrupt, as 2.1.2 asks,
// and the device stays silent until the driver resets it.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vmm/devices/bus.h"
#include "vmm/virtio/device.h"

namespace vicvmm::virtio {

// Counted per transport; shown by --stats.
struct TransportStats {
  std::atomic<uint64_t> notifies{0}, interrupts{0}, chains{0}, resets_needed{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(QueueFault::kCount)> faults{};
};

// The transport's registers.
struct TransportRegs {
  uint32_t status = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint32_t queue_sel = 0;
  uint64_t driver_features = 0;
  uint32_t interrupt_status = 0;
  uint32_t config_generation = 0;  // bumped when the device changes its config space
};

// What a snapshot keeps of a transport: registers and queues.
struct TransportState {
  TransportRegs regs;
  std::vector<QueueState> queues;
};

class MmioTransport : public BusDevice, private QueueHost {
 public:
  MmioTransport(std::shared_ptr<Device> device, GuestMemory& mem, std::function<void()> raise_irq);

  const char* name() const override { return device_->name(); }
  void read(uint64_t base, uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t base, uint64_t offset, std::span<const uint8_t> data) override;

  // A notification for `queue` that bypassed the MMIO exit (ioeventfd).
  void notify(uint32_t queue);
  // The device's completion_fd() is readable (I/O thread).
  void on_completions();
  // Device reset from the host side (clone reset); the driver sees status 0.
  void reset();
  // The device changed its configuration space (e.g. a disk's capacity):
  // bump the generation and raise a configuration-change interrupt.
  void config_changed();

  // Processes every queue as if kicked (after the vCPUs stopped).
  void poll();
  // Takes what is available on every queue, finishes the device's
  // requests in flight (raising their interrupt) and returns the state to
  // snapshot. The slot's I/O must be stopped first (MmioSlot::stop_io).
  TransportState quiesce_and_save();
  TransportState save() const;
  // Resets the device backend (dropping anything in flight), then restores
  // registers and queues (rings re-resolved against this memory); false
  // when a saved queue no longer fits this guest's memory.
  bool restore(const TransportState& s);

  Device& device() { return *device_; }
  const TransportStats& stats() const { return stats_; }
  uint32_t status() const;
  size_t queue_count() const { return queues_.size(); }
  // One line for --stats: counters and any faults by name.
  std::string stats_line() const;

 private:
  GuestMemory& memory() override { return mem_; }
  SplitQueue& queue(size_t index) override { return queues_[index]; }

  uint32_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint32_t v);
  void write_status(uint32_t v);
  void process_locked(uint32_t queue);
  void signal_locked(SplitQueue& q);
  void needs_reset_locked(QueueFault f);
  void reset_locked();
  SplitQueue* selected();

  std::shared_ptr<Device> device_;
  GuestMemory& mem_;
  std::function<void()> raise_irq_;
  const uint64_t offered_;  // device features | transport features

  mutable std::mutex mu_;  // vCPU threads (registers) vs the I/O thread (queues)
  TransportRegs regs_;
  std::vector<SplitQueue> queues_;
  TransportStats stats_;
};

}  // namespace vicvmm::virtio
