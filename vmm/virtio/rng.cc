#include "vmm/virtio/rng.h"

#include <sys/random.h>

namespace vicvmm::virtio {

void Rng::process(size_t queue, QueueHost& host) {
  SplitQueue& q = host.queue(queue);
  while (q.pop(host.memory(), chain_)) {
    if (chain_.readable_bytes != 0 && chain_.writable_bytes == 0) {
      q.fail(QueueFault::WriteToReadOnly);  // nothing we may write into
      return;
    }
    uint32_t written = 0;
    for (const auto& s : chain_.segments) {
      if (!s.writable) continue;
      uint32_t want = std::min(s.len, kMaxPerRequest - written);
      uint32_t got = 0;
      while (got < want) {
        ssize_t n = getrandom(s.host + got, want - got, 0);
        if (n <= 0) break;  // EINTR or a host failure: return what we have
        got += static_cast<uint32_t>(n);
      }
      written += got;
      if (got < want || written == kMaxPerRequest) break;
    }
    bytes_ += written;
    q.push_used(chain_.head, written);
  }
}

}  // namespace vicvmm::virtio
