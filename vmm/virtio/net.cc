#include "vmm/virtio/net.h"

#include <unistd.h>

#include <cstring>

namespace vicvmm::virtio {

namespace {
constexpr uint64_t kFMac = 1ull << 5;
constexpr uint64_t kFStatus = 1ull << 16;
constexpr uint16_t kLinkUp = 1;
constexpr size_t kRxQueue = 0, kTxQueue = 1;
}  // namespace

uint64_t Net::features() const { return kFMac | kFStatus; }

void Net::read_config(uint64_t offset, std::span<uint8_t> data) {
  uint8_t cfg[8] = {};  // mac[6], status u16
  std::memcpy(cfg, net::kGuestMac, 6);
  std::memcpy(cfg + 6, &kLinkUp, 2);
  read_config_window(cfg, offset, data);
}

void Net::transmit(QueueHost& host) {
  SplitQueue& q = host.queue(kTxQueue);
  while (q.pop(host.memory(), chain_)) {
    if (chain_.readable_bytes < kHeaderBytes || chain_.readable_bytes > kMaxFrame) {
      q.fail(QueueFault::MalformedRequest);
      return;
    }
    std::vector<uint8_t> frame(chain_.readable_bytes - kHeaderBytes);
    chain_.read(kHeaderBytes, frame);
    q.push_used(chain_.head, 0);
    ++frames_out_;
    backend_->send_from_guest(std::move(frame));
  }
}

void Net::deliver(QueueHost& host) {
  SplitQueue& q = host.queue(kRxQueue);
  for (;;) {
    if (pending_.empty() && !backend_->take_for_guest(pending_)) return;
    if (!q.pop(host.memory(), chain_)) return;  // no buffer: keep the frame for the next kick
    if (chain_.writable_bytes < kHeaderBytes + pending_.size()) {
      ++frames_dropped_;  // the guest's buffer is too small for it
      q.push_used(chain_.head, 0);
      pending_.clear();
      continue;
    }
    uint8_t hdr[kHeaderBytes] = {};
    hdr[10] = 1;  // num_buffers
    chain_.write(0, hdr);
    chain_.write(kHeaderBytes, pending_);
    q.push_used(chain_.head, static_cast<uint32_t>(kHeaderBytes + pending_.size()));
    pending_.clear();
    ++frames_in_;
  }
}

void Net::process(size_t queue, QueueHost& host) {
  if (queue == kTxQueue) transmit(host);
  deliver(host);  // a kick on the receive queue means new buffers
}

void Net::complete(QueueHost& host) {
  uint64_t n;
  ssize_t r = ::read(backend_->to_guest_fd(), &n, sizeof n);
  (void)r;
  deliver(host);
}

}  // namespace vicvmm::virtio
