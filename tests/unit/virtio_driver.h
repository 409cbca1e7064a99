// A minimal virtio driver for tests: lays out a split queue in guest memory
// and writes descriptors and ring entries the way a guest would (or, for
// the hostile cases, the way a guest must not).
#pragma once

#include <cstdint>

#include "vmm/memory/guest_memory.h"
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

}  // namespace vicvmm::test
