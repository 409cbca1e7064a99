// libFuzzer target: a guest-controlled split virtqueue. The input becomes
// guest RAM (descriptor table, rings and indirect tables at the addresses
// the queue uses), preceded by two bytes choosing the queue size and the
// negotiated features. Every chain the queue hands out must lie inside
// guest RAM, and popping must end (empty or a fault) within a bounded
// number of steps. Run: tools/fuzz virtqueue [SECONDS]
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "vmm/virtio/queue.h"

using namespace vicvmm;
using namespace vicvmm::virtio;

namespace {
constexpr uint64_t kMem = 256 * 1024;
constexpr uint64_t kDesc = 0x0, kAvail = 0x2000, kUsed = 0x3000;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  if (size < 2) return 0;
  const uint16_t qsize = static_cast<uint16_t>(1u << (data[0] % 10));  // 1..512 (512 is above the max: refused)
  const bool event_idx = data[1] & 1, indirect = data[1] & 2;
  data += 2;
  size -= 2;
  auto* base = *mem.host_ptr(0, kMem);
  std::memset(base, 0, kMem);
  std::memcpy(base, data, std::min<size_t>(size, kMem));

  SplitQueue q(256);
  q.set_size(qsize);
  q.set_desc(kDesc);
  q.set_avail(kAvail);
  q.set_used(kUsed);
  if (q.enable(mem, event_idx, indirect) != QueueFault::None) return 0;
  Chain c;
  for (int i = 0; i < 2 * 65536; ++i) {
    if (!q.pop(mem, c)) break;
    uint64_t r = 0, w = 0;
    for (const auto& s : c.segments) {
      if (s.len && (s.host < base || s.host + s.len > base + kMem)) std::abort();  // escaped guest RAM
      (s.writable ? w : r) += s.len;
    }
    if (r != c.readable_bytes || w != c.writable_bytes) std::abort();
    if (c.head >= qsize) std::abort();
    q.push_used(c.head, static_cast<uint32_t>(w));
    (void)q.should_notify();
  }
  return 0;
}
