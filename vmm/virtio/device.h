// What a virtio device implements, independent of the transport that
// carries it (virtio-mmio here; kvmtool and Firecracker keep the same split).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"

namespace vicvmm::virtio {

// Copies the window [offset, offset + data.size()) of a device's config
// space `cfg` into `data`; bytes past its end read 0.
inline void read_config_window(std::span<const uint8_t> cfg, uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < cfg.size() ? cfg[offset + i] : 0;
}

// The transport as a device sees it while it processes a queue.
class QueueHost {
 public:
  virtual ~QueueHost() = default;
  virtual GuestMemory& memory() = 0;
  virtual SplitQueue& queue(size_t index) = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const char* name() const = 0;
  virtual uint32_t device_id() const = 0;
  // Device-specific feature bits; the transport adds VERSION_1,
  // INDIRECT_DESC and EVENT_IDX.
  virtual uint64_t features() const { return 0; }
  // Maximum size of each queue; the vector's length is the queue count.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  // Device configuration space (4.2.2 "Config"); reads past its end read 0.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) {
    for (auto& b : data) b = 0;
    (void)offset;
  }
  virtual void write_config(uint64_t, std::span<const uint8_t>) {}
  // The driver negotiated `features` and set DRIVER_OK.
  virtual void activate(uint64_t features) { (void)features; }
  // The driver reset the device (status 0) or the VMM did.
  virtual void reset() {}
  // The transport was restored from a snapshot with the driver running: the
  // guest already went through the device's setup (e.g. a handshake).
  virtual void restored() {}
  // Consume what the driver made available on `queue` and push used
  // entries. Called with the transport's lock held; must not block. A
  // request the device cannot accept is reported with SplitQueue::fail.
  virtual void process(size_t queue, QueueHost& host) = 0;
  // Devices whose backends finish requests later (io_uring) expose an fd
  // that becomes readable when completions wait; the transport then calls
  // complete() on the I/O thread, with its lock held, and interrupts once
  // for everything completed.
  virtual int completion_fd() const { return -1; }
  virtual void complete(QueueHost&) {}
  // Before a snapshot: finish every request in flight (blocking), so that
  // the queues' state is all there is to save. Lock held as for complete().
  virtual void quiesce(QueueHost&) {}
};

}  // namespace vicvmm::virtio
