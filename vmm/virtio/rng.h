// virtio-rng (virtio 1.2, 5.4): one request queue; every device-writable
// buffer the guest offers is filled from the host's getrandom().
#pragma once

#include "vmm/virtio/device.h"

namespace vicvmm::virtio {

class Rng : public Device {
 public:
  // A hostile guest may offer a 4 GiB buffer: fill at most this much per
  // request (the driver asks again for more).
  static constexpr uint32_t kMaxPerRequest = 64 * 1024;

  const char* name() const override { return "rng"; }
  uint32_t device_id() const override { return kDeviceRng; }
  std::vector<uint16_t> queue_max_sizes() const override { return {256}; }
  void process(size_t queue, QueueHost& host) override;

  uint64_t bytes_served() const { return bytes_; }

 private:
  Chain chain_;  // reused: no allocation per request
  uint64_t bytes_ = 0;
};

}  // namespace vicvmm::virtio
