// The agent's doorbell (guest/abi/vicvmm_abi.h): a 32-bit register that
// vic-init writes from guest user mode, reachable both as an MMIO page and as
// an I/O port. Each write is decoded into an event for the machine.
#pragma once

#include <atomic>
#include <functional>

#include "guest/abi/vicvmm_abi.h"
#include "vmm/devices/bus.h"

namespace vicvmm {

class Doorbell : public BusDevice {
 public:
  using EventFn = std::function<void(uint32_t event, uint32_t arg)>;
  explicit Doorbell(EventFn on_event) : on_event_(std::move(on_event)) {}

  const char* name() const override { return "doorbell"; }
  // Reads return the protocol version so the agent can check it talks to us.
  void read(uint64_t, uint64_t, std::span<uint8_t> data) override {
    uint32_t v = VIC_MAILBOX_VERSION;
    for (size_t i = 0; i < data.size(); ++i) data[i] = i < 4 ? static_cast<uint8_t>(v >> (8 * i)) : 0;
  }
  void write(uint64_t, uint64_t offset, std::span<const uint8_t> data) override {
    if (offset != 0 || data.size() != 4) return;  // only whole 32-bit writes at offset 0 count
    uint32_t v = data[0] | (data[1] << 8) | (data[2] << 16) | (static_cast<uint32_t>(data[3]) << 24);
    ++writes_;
    if (on_event_) on_event_(VIC_DOORBELL_EVENT(v), VIC_DOORBELL_ARG(v));
  }
  uint64_t writes() const { return writes_; }

 private:
  EventFn on_event_;
  std::atomic<uint64_t> writes_{0};
};

}  // namespace vicvmm
