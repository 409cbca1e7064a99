// The split virtqueue (virtio 1.2, 2.7), device side. Every value the guest
// controls is checked before it is used: ring addresses and alignment when
// the queue is enabled, and on every pop the available index, each
// descriptor index, address, length and flag, indirect tables and the
// chain's length (a loop or a chain longer than the queue is a fault, not a
// hang). Descriptors are copied out of guest memory once and only the copy
// is checked, so a guest changing them under us cannot slip past a check.
//
// A fault leaves the queue broken: the device is expected to stop using it
// and ask the driver for a reset (DEVICE_NEEDS_RESET), see mmio.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/spec.h"

namespace vicvmm::virtio {

enum class QueueFault : uint8_t {
  None = 0,
  BadQueueSize,        // zero, above the maximum, or not a power of two
  RingOutOfRange,      // descriptor table or a ring not in guest RAM
  RingMisaligned,      // ring address not aligned as 2.7 requires
  AvailIndexJump,      // available index moved by more than the queue size
  HeadOutOfRange,      // available ring entry >= queue size
  NextOutOfRange,      // a descriptor's next >= table size
  DescriptorLoop,      // a descriptor index seen twice in one chain
  ChainTooLong,        // more descriptors than the queue (or indirect table) holds
  BufferOutOfRange,    // a buffer's address + length not inside guest RAM
  BadIndirect,         // indirect without the feature, len not a multiple of 16, nested, or with NEXT
  ReadableAfterWritable,  // a device-readable descriptor after a device-writable one
  ChainTooLarge,       // total buffer bytes above 4 GiB - 1
  WriteToReadOnly,     // the device had to write into a device-readable buffer (device-level check)
  MalformedRequest,    // the request's header or layout is wrong for the device
  kCount,
};

const char* queue_fault_name(QueueFault f);

// One buffer of a chain, already resolved to host memory.
struct Segment {
  uint8_t* host;
  uint32_t len;
  bool writable;  // device-writable (VIRTQ_DESC_F_WRITE)
};

// A popped descriptor chain: device-readable segments first, then writable.
struct Chain {
  uint16_t head = 0;
  std::vector<Segment> segments;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;

  void clear() {
    segments.clear();
    readable_bytes = writable_bytes = 0;
  }
  // Copies up to out.size() bytes from the readable segments, starting
  // `offset` bytes in; returns the count copied.
  size_t read(uint64_t offset, std::span<uint8_t> out) const;
  // Copies into the writable segments, starting `offset` bytes into them;
  // returns the count copied.
  size_t write(uint64_t offset, std::span<const uint8_t> in) const;
};

// What a snapshot keeps of a queue (plain data, little-endian on x86).
struct QueueState {
  uint16_t size = 0;
  uint16_t ready = 0;
  uint16_t last_avail = 0;   // next available-ring slot the device reads
  uint16_t next_used = 0;    // next used index the device publishes
  uint16_t signalled_used = 0;  // used index at the last interrupt decision
  uint16_t event_idx = 0;
  uint16_t indirect = 0;
  uint16_t reserved = 0;
  uint64_t desc = 0, avail = 0, used = 0;
};
static_assert(sizeof(QueueState) == 40);

class SplitQueue {
 public:
  explicit SplitQueue(uint16_t max_size) : max_size_(max_size) {}

  uint16_t max_size() const { return max_size_; }
  const QueueState& state() const { return st_; }
  bool ready() const { return st_.ready != 0; }
  bool broken() const { return fault_ != QueueFault::None; }
  QueueFault fault() const { return fault_; }

  // Driver-side configuration (through the transport, before ready).
  void set_size(uint16_t n) { st_.size = n; }
  void set_desc(uint64_t gpa) { st_.desc = gpa; }
  void set_avail(uint64_t gpa) { st_.avail = gpa; }
  void set_used(uint64_t gpa) { st_.used = gpa; }
  // Validates the configuration and resolves the rings; the queue is
  // usable only when this returns None.
  QueueFault enable(GuestMemory& mem, bool event_idx, bool indirect);
  void reset();
  // Brings back a saved queue (snapshot/clone); re-resolves the rings.
  QueueFault restore(GuestMemory& mem, const QueueState& s);

  // Takes the next available chain into `out`. Returns false when the ring
  // is empty (or the queue is broken); on a fault the queue is broken and
  // fault() says why.
  bool pop(GuestMemory& mem, Chain& out);
  // Publishes a finished chain. `written` is what the device wrote.
  void push_used(uint16_t head, uint32_t written);
  // After a batch of push_used: whether the driver asked to be interrupted
  // (EVENT_IDX's used_event, or the NO_INTERRUPT flag).
  bool should_notify();
  // A device-level fault (e.g. a write into a read-only buffer) breaks the
  // queue the same way a malformed ring does.
  void fail(QueueFault f) { fault_ = f; }

 private:
  QueueFault resolve(GuestMemory& mem);
  QueueFault walk(GuestMemory& mem, uint16_t head, Chain& out);
  QueueFault add_segment(GuestMemory& mem, const Descriptor& d, Chain& out, bool& seen_writable);
  uint16_t avail_idx() const;

  uint16_t max_size_;
  QueueState st_;
  QueueFault fault_ = QueueFault::None;
  // Host views of the rings (valid while the queue is ready).
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  std::vector<uint64_t> visited_;           // one bit per descriptor, reused per chain
  std::vector<uint64_t> visited_indirect_;  // the same for an indirect table
};

}  // namespace vicvmm::virtio
