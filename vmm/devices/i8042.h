// Just enough of the PS/2 controller for Linux's `reboot=k`: writing 0xFE
// to the command port pulses the CPU reset line, which ends the VM.
#pragma once

#include <functional>

#include "vmm/devices/bus.h"

namespace vicvmm {

class I8042 : public BusDevice {
 public:
  static constexpr uint16_t kDataPort = 0x60, kCommandPort = 0x64;
  static constexpr uint8_t kCmdResetCpu = 0xfe;

  explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

  const char* name() const override { return "i8042"; }
  // Status reads 0: output buffer empty, input buffer empty, so the kernel
  // never waits on us. Register base 0x60 covers 0x60..0x64.
  void read(uint64_t, uint64_t, std::span<uint8_t> data) override {
    for (auto& b : data) b = 0;
  }
  void write(uint64_t base, uint64_t offset, std::span<const uint8_t> data) override {
    if (base + offset == kCommandPort && !data.empty() && data[0] == kCmdResetCpu && on_reset_) on_reset_();
  }

 private:
  std::function<void()> on_reset_;
};

}  // namespace vicvmm
