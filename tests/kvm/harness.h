// Shared pieces of the kvm suite: load a guest/tests binary into a fresh
// Machine, run it with a safety timeout, read its results back.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "guest/tests/test_guest.h"
#include "vmm/devices/bus.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine.h"

namespace vicvmm {
// Lets Catch print stop reasons by name.
inline std::ostream& operator<<(std::ostream& os, StopReason r) { return os << stop_reason_name(r); }
}  // namespace vicvmm

// REQUIRE that a Result holds a value, printing its error otherwise.
#define REQUIRE_OK(expr)                                                    \
  do {                                                                      \
    auto&& vic_ok_r_ = (expr);                                              \
    INFO((vic_ok_r_ ? std::string() : vic_ok_r_.error().message));          \
    REQUIRE(vic_ok_r_.has_value());                                         \
  } while (0)

namespace vicvmm::test {

// A broken guest must never hang the suite; no test guest needs more than a
// few seconds, even with every CPL0 instruction emulated.
inline constexpr std::chrono::milliseconds kSafetyTimeout{20000};
inline constexpr uint64_t kTinyMemSize = 32ull << 20;

// The process-wide /dev/kvm handle (main() checked it opens).
const Kvm& kvm();

// The flat binary guest/tests/<name>.S was built into.
std::vector<uint8_t> guest_image(const std::string& name);

// 32 MiB of anonymous RAM, one vCPU, no irqchip (HLT exits to us), console
// discarded, the safety timeout.
MachineConfig tiny_config();

// Creates a machine, loads guest `name` at TG_LOAD_GPA and points vCPU 0 at
// it in long mode with RSI = rsi.
std::unique_ptr<Machine> boot_guest(const MachineConfig& cfg, const std::string& name, uint64_t rsi = 0);

struct RunResult {
  StopInfo stop;
  double seconds = 0;
};

// Runs to the stop; requires run() itself to succeed. Unless `expect_timeout`,
// also checks the safety timeout did not fire.
RunResult run_guest(Machine& m, bool expect_timeout = false);

uint64_t read_u64(const Machine& m, uint64_t gpa);
uint32_t read_u32(const Machine& m, uint64_t gpa);

// Records every access to the port or MMIO range it is inserted at.
class Recorder : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    size_t size;
    uint64_t value;  // little-endian value written (0 for reads)
    bool operator==(const Access&) const = default;
  };

  const char* name() const override { return "test recorder"; }
  void read(uint64_t, uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t, uint64_t offset, std::span<const uint8_t> data) override;
  std::vector<Access> accesses() const;

 private:
  mutable std::mutex mu_;
  std::vector<Access> log_;
};

std::ostream& operator<<(std::ostream& os, const Recorder::Access& a);

}  // namespace vicvmm::test
