// virtio-net (virtio 1.2, 5.1): one receive and one transmit queue, a fixed
// MAC, link always up; frames go to and come from a user-mode network
// backend (vmm/net/slirp_backend.h). No offloads: every frame is a plain
// Ethernet frame behind the 12-byte virtio_net_hdr.
#pragma once

#include <memory>

#include "vmm/net/slirp_backend.h"
#include "vmm/virtio/device.h"

namespace vicvmm::virtio {

class Net : public Device {
 public:
  static constexpr size_t kHeaderBytes = 12;  // virtio_net_hdr_v1 (VERSION_1)
  static constexpr size_t kMaxFrame = 65550;  // what a guest may hand us per chain, header included

  explicit Net(std::shared_ptr<net::SlirpBackend> backend) : backend_(std::move(backend)) {}

  const char* name() const override { return "net"; }
  uint32_t device_id() const override { return kDeviceNet; }
  uint64_t features() const override;
  // 64 receive buffers (allocated by the guest at probe, emulated work here).
  std::vector<uint16_t> queue_max_sizes() const override { return {64, 256}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void process(size_t queue, QueueHost& host) override;
  int completion_fd() const override { return backend_->to_guest_fd(); }
  void complete(QueueHost& host) override;
  void reset() override { pending_.clear(); }

  net::SlirpBackend& backend() { return *backend_; }
  uint64_t frames_in() const { return frames_in_; }
  uint64_t frames_out() const { return frames_out_; }

 private:
  void transmit(QueueHost& host);
  void deliver(QueueHost& host);

  std::shared_ptr<net::SlirpBackend> backend_;
  Chain chain_;
  std::vector<uint8_t> pending_;  // a frame waiting for a receive buffer
  uint64_t frames_in_ = 0, frames_out_ = 0, frames_dropped_ = 0;
};

}  // namespace vicvmm::virtio
