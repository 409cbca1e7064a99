#include "vmm/devices/bus.h"

#include <algorithm>
#include <cstring>

namespace vicvmm {

Result<> Bus::insert(std::shared_ptr<BusDevice> dev, uint64_t base, uint64_t len) {
  if (len == 0 || base + len < base)
    return err("{} bus: invalid range {:#x}+{:#x} for {}", name_, base, len, dev->name());
  for (const auto& r : ranges_) {
    if (base < r.base + r.len && r.base < base + len)
      return err("{} bus: {} at {:#x}+{:#x} overlaps {} at {:#x}+{:#x}", name_, dev->name(), base, len,
                 r.dev->name(), r.base, r.len);
  }
  auto pos = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                              [](const Range& r, uint64_t b) { return r.base < b; });
  ranges_.insert(pos, Range{base, len, std::move(dev)});
  return {};
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t len) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  // The whole access must fall inside the range.
  if (addr - it->base >= it->len || len > it->len - (addr - it->base)) return nullptr;
  return &*it;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (!r) {
    std::memset(data.data(), 0xff, data.size());
    return false;
  }
  r->dev->read(r->base, addr - r->base, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (!r) return false;
  r->dev->write(r->base, addr - r->base, data);
  return true;
}

}  // namespace vicvmm
