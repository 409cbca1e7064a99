// A minimal virtio driver for tests: lays out a split queue in guest memory
// and writes descriptors and ring entries the way a guest would (or, for
// the hostile cases, the way a guest must not).
#pragma once

#include <cstdint>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/spec.h"

namespace vicvmm::test {

struct QueueLayout {
  uint16_t size = 8;
  uint64_t desc = 0x1000, avail = 0x2000, used = 0x3000;
};

class FakeDriver {
 public:
  FakeDriver(GuestMemory& mem, QueueLayout l = {}) : mem_(mem), l_(l) {}

  const QueueLayout& layout() const { return l_; }
  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    set_desc_at(l_.desc, i, addr, len, flags, next);
  }
  void set_desc_at(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    virtio::Descriptor d{addr, len, flags, next};
    (void)mem_.write_obj(table + 16ull * i, d);
  }
  // Makes chain `head` available and bumps the available index.
  void offer(uint16_t head) {
    (void)mem_.write_obj<uint16_t>(l_.avail + 4 + 2ull * (avail_idx_ % l_.size), head);
    ++avail_idx_;
    (void)mem_.write_obj<uint16_t>(l_.avail + 2, avail_idx_);
  }
  void set_avail_idx(uint16_t v) {
    avail_idx_ = v;
    (void)mem_.write_obj<uint16_t>(l_.avail + 2, v);
  }
  // A fresh set of rings, as a driver lays out after a device reset.
  void restart() {
    (void)mem_.fill(l_.avail, 0, 6 + 2ull * l_.size);
    (void)mem_.fill(l_.used, 0, 6 + 8ull * l_.size);
    avail_idx_ = 0;
  }
  void set_avail_flags(uint16_t f) { (void)mem_.write_obj<uint16_t>(l_.avail, f); }
  void set_used_event(uint16_t v) { (void)mem_.write_obj<uint16_t>(l_.avail + 4 + 2ull * l_.size, v); }
  uint16_t used_idx() const { return *mem_.read_obj<uint16_t>(l_.used + 2); }
  uint16_t avail_event() const { return *mem_.read_obj<uint16_t>(l_.used + 4 + 8ull * l_.size); }
  virtio::UsedElem used(uint16_t slot) const {
    return *mem_.read_obj<virtio::UsedElem>(l_.used + 4 + 8ull * (slot % l_.size));
  }

 private:
  GuestMemory& mem_;
  QueueLayout l_;
  uint16_t avail_idx_ = 0;
};

// The register side of a driver, in the Linux driver's order (virtio_mmio.c:
// vm_probe, vm_finalize_features, vm_setup_vq).
class MmioDriver {
 public:
  explicit MmioDriver(virtio::MmioTransport& t) : t_(t) {}

  uint32_t rd(uint64_t off) {
    uint8_t b[4];
    t_.read(0, off, b);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t{b[3]} << 24);
  }
  void wr(uint64_t off, uint32_t v) {
    uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    t_.write(0, off, b);
  }
  uint64_t device_features() {
    using namespace virtio::mmio;
    wr(kRegDeviceFeaturesSel, 0);
    uint64_t lo = rd(kRegDeviceFeatures);
    wr(kRegDeviceFeaturesSel, 1);
    return lo | (uint64_t{rd(kRegDeviceFeatures)} << 32);
  }
  // Resets the device and negotiates `features`; returns the status read back.
  uint32_t negotiate(uint64_t features) {
    using namespace virtio;
    using namespace virtio::mmio;
    wr(kRegStatus, 0);
    wr(kRegStatus, kStatusAcknowledge);
    wr(kRegStatus, kStatusAcknowledge | kStatusDriver);
    wr(kRegDriverFeaturesSel, 0);
    wr(kRegDriverFeatures, static_cast<uint32_t>(features));
    wr(kRegDriverFeaturesSel, 1);
    wr(kRegDriverFeatures, static_cast<uint32_t>(features >> 32));
    wr(kRegStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    return rd(kRegStatus);
  }
  void setup_queue(const QueueLayout& l, uint16_t size) {
    using namespace virtio::mmio;
    wr(kRegQueueSel, 0);
    wr(kRegQueueNum, size);
    wr(kRegQueueDescLow, static_cast<uint32_t>(l.desc));
    wr(kRegQueueDescHigh, static_cast<uint32_t>(l.desc >> 32));
    wr(kRegQueueDriverLow, static_cast<uint32_t>(l.avail));
    wr(kRegQueueDriverHigh, static_cast<uint32_t>(l.avail >> 32));
    wr(kRegQueueDeviceLow, static_cast<uint32_t>(l.used));
    wr(kRegQueueDeviceHigh, static_cast<uint32_t>(l.used >> 32));
    wr(kRegQueueReady, 1);
  }
  void driver_ok() {
    using namespace virtio;
    wr(mmio::kRegStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  // The whole bring-up; true when the device reached DRIVER_OK.
  bool bring_up(const QueueLayout& l, uint64_t features) {
    if (!(negotiate(features) & virtio::kStatusFeaturesOk)) return false;
    setup_queue(l, l.size);
    if (rd(virtio::mmio::kRegQueueReady) != 1) return false;
    driver_ok();
    return (rd(virtio::mmio::kRegStatus) & virtio::kStatusDriverOk) != 0;
  }

 private:
  virtio::MmioTransport& t_;
};

}  // namespace vicvmm::test
