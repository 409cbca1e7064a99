#include "vmm/virtio/queue.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace vicvmm::virtio {

namespace {

// The rings live in memory the guest writes concurrently: every shared
// index is read once, with the ordering the spec's barriers ask for.
uint16_t load16(const uint8_t* p) { return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE); }
void store16(uint8_t* p, uint16_t v) { __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE); }

bool is_pow2(uint32_t n) { return n != 0 && (n & (n - 1)) == 0; }

constexpr uint64_t kMaxChainBytes = 0xffff'ffffull;  // used.len is 32 bits

}  // namespace

const char* queue_fault_name(QueueFault f) {
  switch (f) {
    case QueueFault::None: return "none";
    case QueueFault::BadQueueSize: return "bad queue size";
    case QueueFault::RingOutOfRange: return "ring outside guest RAM";
    case QueueFault::RingMisaligned: return "misaligned ring";
    case QueueFault::AvailIndexJump: return "available index jumped past the queue size";
    case QueueFault::HeadOutOfRange: return "chain head out of range";
    case QueueFault::NextOutOfRange: return "next descriptor out of range";
    case QueueFault::DescriptorLoop: return "descriptor loop";
    case QueueFault::ChainTooLong: return "chain longer than the queue";
    case QueueFault::BufferOutOfRange: return "buffer outside guest RAM";
    case QueueFault::BadIndirect: return "bad indirect descriptor";
    case QueueFault::ReadableAfterWritable: return "readable descriptor after a writable one";
    case QueueFault::ChainTooLarge: return "chain larger than 4 GiB";
    case QueueFault::WriteToReadOnly: return "write into a read-only buffer";
    case QueueFault::MalformedRequest: return "malformed request";
    case QueueFault::kCount: break;
  }
  return "?";
}

size_t Chain::read(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  for (const auto& s : segments) {
    if (s.writable || done == out.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    size_t n = std::min<size_t>(s.len - offset, out.size() - done);
    std::memcpy(out.data() + done, s.host + offset, n);
    done += n;
    offset = 0;
  }
  return done;
}

size_t Chain::write(uint64_t offset, std::span<const uint8_t> in) const {
  size_t done = 0;
  for (const auto& s : segments) {
    if (!s.writable) continue;
    if (done == in.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    size_t n = std::min<size_t>(s.len - offset, in.size() - done);
    std::memcpy(s.host + offset, in.data() + done, n);
    done += n;
    offset = 0;
  }
  return done;
}

void SplitQueue::reset() {
  st_ = QueueState{};
  fault_ = QueueFault::None;
  desc_ = avail_ = used_ = nullptr;
}

QueueFault SplitQueue::resolve(GuestMemory& mem) {
  const uint64_t n = st_.size;
  if (!is_pow2(n) || n > max_size_) return QueueFault::BadQueueSize;
  if (st_.desc % 16 || st_.avail % 2 || st_.used % 4) return QueueFault::RingMisaligned;
  // Sizes include the EVENT_IDX words (used_event / avail_event) whether or
  // not the feature is on: the driver lays them out either way.
  auto d = mem.host_ptr(st_.desc, 16 * n);
  auto a = mem.host_ptr(st_.avail, 6 + 2 * n);
  auto u = mem.host_ptr(st_.used, 6 + 8 * n);
  if (!d || !a || !u) return QueueFault::RingOutOfRange;
  desc_ = *d;
  avail_ = *a;
  used_ = *u;
  visited_.assign((n + 63) / 64, 0);
  return QueueFault::None;
}

QueueFault SplitQueue::enable(GuestMemory& mem, bool event_idx, bool indirect) {
  st_.event_idx = event_idx;
  st_.indirect = indirect;
  st_.last_avail = st_.next_used = st_.signalled_used = 0;
  fault_ = resolve(mem);
  st_.ready = fault_ == QueueFault::None;
  return fault_;
}

QueueFault SplitQueue::restore(GuestMemory& mem, const QueueState& s) {
  st_ = s;
  fault_ = QueueFault::None;
  desc_ = avail_ = used_ = nullptr;
  if (!st_.ready) return QueueFault::None;
  fault_ = resolve(mem);
  if (fault_ != QueueFault::None) st_.ready = 0;
  return fault_;
}

uint16_t SplitQueue::avail_idx() const { return load16(avail_ + 2); }

bool SplitQueue::pop(GuestMemory& mem, Chain& out) {
  if (!st_.ready || broken()) return false;
  mem.log_host_write(st_.used, 6 + 8ull * st_.size);  // push_used and avail_event write it
  uint16_t idx = avail_idx();
  if (idx == st_.last_avail && st_.event_idx) {
    // Ask for a kick at the next buffer, then look again: the driver may
    // have added one before it saw our avail_event.
    store16(used_ + 4 + 8 * st_.size, st_.last_avail);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    idx = avail_idx();
  }
  if (idx == st_.last_avail) return false;
  if (static_cast<uint16_t>(idx - st_.last_avail) > st_.size) {
    fault_ = QueueFault::AvailIndexJump;
    return false;
  }
  uint16_t head = load16(avail_ + 4 + 2 * (st_.last_avail % st_.size));
  if (head >= st_.size) {
    fault_ = QueueFault::HeadOutOfRange;
    return false;
  }
  out.clear();
  out.head = head;
  if (QueueFault f = walk(mem, head, out); f != QueueFault::None) {
    fault_ = f;
    return false;
  }
  ++st_.last_avail;
  if (st_.event_idx) store16(used_ + 4 + 8 * st_.size, st_.last_avail);
  return true;
}

QueueFault SplitQueue::add_segment(GuestMemory& mem, const Descriptor& d, Chain& out, bool& seen_writable) {
  bool writable = d.flags & kDescWrite;
  if (!writable && seen_writable) return QueueFault::ReadableAfterWritable;
  seen_writable |= writable;
  uint8_t* host = nullptr;
  if (d.len > 0) {
    auto p = mem.host_ptr(d.addr, d.len);
    if (!p) return QueueFault::BufferOutOfRange;
    host = *p;
    if (writable) mem.log_host_write(d.addr, d.len);  // the device may write any of it
  }
  (writable ? out.writable_bytes : out.readable_bytes) += d.len;
  if (out.readable_bytes + out.writable_bytes > kMaxChainBytes) return QueueFault::ChainTooLarge;
  out.segments.push_back({host, d.len, writable});
  return QueueFault::None;
}

QueueFault SplitQueue::walk(GuestMemory& mem, uint16_t head, Chain& out) {
  std::fill(visited_.begin(), visited_.end(), 0);
  bool seen_writable = false;
  uint16_t i = head;
  for (uint32_t count = 0;; ++count) {
    if (count >= st_.size) return QueueFault::ChainTooLong;
    if (visited_[i / 64] & (1ull << (i % 64))) return QueueFault::DescriptorLoop;
    visited_[i / 64] |= 1ull << (i % 64);
    Descriptor d;
    std::memcpy(&d, desc_ + 16 * i, sizeof d);  // one copy; only it is checked
    if (d.flags & kDescIndirect) {
      // 2.7.5.3: an indirect descriptor is the whole chain's buffer list:
      // not with NEXT, not nested, and only when negotiated.
      if (!st_.indirect || (d.flags & kDescNext) || d.len == 0 || d.len % 16) return QueueFault::BadIndirect;
      uint64_t entries = d.len / 16;
      if (entries > kMaxQueueSize) return QueueFault::ChainTooLong;
      auto table = mem.host_ptr(d.addr, d.len);
      if (!table) return QueueFault::BufferOutOfRange;
      auto& seen = visited_indirect_;
      seen.assign((entries + 63) / 64, 0);
      uint16_t j = 0;
      for (uint64_t n = 0;; ++n) {
        if (n >= entries) return QueueFault::ChainTooLong;
        if (seen[j / 64] & (1ull << (j % 64))) return QueueFault::DescriptorLoop;
        seen[j / 64] |= 1ull << (j % 64);
        Descriptor e;
        std::memcpy(&e, *table + 16 * j, sizeof e);
        if (e.flags & kDescIndirect) return QueueFault::BadIndirect;
        if (QueueFault f = add_segment(mem, e, out, seen_writable); f != QueueFault::None) return f;
        if (!(e.flags & kDescNext)) break;
        if (e.next >= entries) return QueueFault::NextOutOfRange;
        j = e.next;
      }
      return QueueFault::None;
    }
    if (QueueFault f = add_segment(mem, d, out, seen_writable); f != QueueFault::None) return f;
    if (!(d.flags & kDescNext)) return QueueFault::None;
    if (d.next >= st_.size) return QueueFault::NextOutOfRange;
    i = d.next;
  }
}

void SplitQueue::push_used(uint16_t head, uint32_t written) {
  if (!st_.ready) return;
  uint8_t* elem = used_ + 4 + 8 * (st_.next_used % st_.size);
  UsedElem e{head, written};
  std::memcpy(elem, &e, sizeof e);
  ++st_.next_used;
  store16(used_ + 2, st_.next_used);  // release: the element is visible first
}

bool SplitQueue::should_notify() {
  if (!st_.ready) return false;
  uint16_t old = st_.signalled_used, now = st_.next_used;
  if (old == now) return false;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // used idx before used_event
  st_.signalled_used = now;
  if (st_.event_idx) {
    uint16_t used_event = load16(avail_ + 4 + 2 * st_.size);
    return static_cast<uint16_t>(now - used_event - 1) < static_cast<uint16_t>(now - old);
  }
  return !(load16(avail_) & kAvailNoInterrupt);
}

}  // namespace vicvmm::virtio
