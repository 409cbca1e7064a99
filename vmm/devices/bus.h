// Address-range dispatch for port I/O and MMIO exits. A device claims one or
// more ranges; the vCPU loop hands each access to the device that owns it,
// with the offset inside that range.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "vmm/result.h"

namespace vicvmm {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual const char* name() const = 0;
  // `base` is the start of the range that matched, `offset` the distance into it.
  virtual void read(uint64_t base, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t base, uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Fails when the range is empty, wraps, or overlaps a registered one.
  Result<> insert(std::shared_ptr<BusDevice> dev, uint64_t base, uint64_t len);

  // Dispatches an access; false when no device claims it (the caller counts
  // it and reads back all-ones, as an empty bus would).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t base, len;
    std::shared_ptr<BusDevice> dev;
  };
  const Range* find(uint64_t addr, uint64_t len) const;

  std::string name_;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
};

}  // namespace vicvmm
