// Guest physical memory: a few host mappings, each covering one contiguous
// guest-physical range, with bounds-checked access by guest-physical address.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

// Guest RAM sizes vicvmm supports, from the CLI's --mem to a snapshot's
// header: at least a kernel and a small initramfs, at most 64 GiB.
inline constexpr uint64_t kMinGuestMemory = 32ull << 20;
inline constexpr uint64_t kMaxGuestMemory = 64ull << 30;

// Where guest RAM lives on the host.
enum class Backing {
  Anonymous,    // MAP_PRIVATE|MAP_ANONYMOUS: plain process memory
  SharedMemfd,  // MAP_SHARED of a memfd: another mapping (a snapshot) sees writes
  PrivateFile,  // MAP_PRIVATE of a caller's file or memfd: copy-on-write clone
};

const char* backing_name(Backing b);

struct MemoryRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;
  uint64_t file_offset = 0;  // offset of this region inside the backing fd
};

class GuestMemory {
 public:
  // x86 layout for `size` bytes of RAM: one region at 0, split around the
  // 32-bit MMIO hole (kMmioHoleStart..4 GiB) when it does not fit below it.
  static constexpr uint64_t kMmioHoleStart = 0xC000'0000ull;
  static constexpr uint64_t k4GiB = 0x1'0000'0000ull;
  static std::vector<MemoryRegion> x86_layout(uint64_t size);

  // Maps `size` bytes of RAM with the given backing. For PrivateFile, `fd`
  // (not owned) is mapped MAP_PRIVATE and must be at least `size` bytes.
  static Result<GuestMemory> create(uint64_t size, Backing backing, int fd = -1);

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  uint64_t size() const { return size_; }
  Backing backing() const { return backing_; }
  const std::vector<MemoryRegion>& regions() const { return regions_; }
  // The memfd behind SharedMemfd memory (-1 otherwise).
  int memfd() const { return memfd_.get(); }

  // Host pointer for [gpa, gpa+len), or an error when any byte of it is not RAM
  // or the range crosses a region boundary.
  Result<uint8_t*> host_ptr(uint64_t gpa, uint64_t len);
  Result<const uint8_t*> host_ptr(uint64_t gpa, uint64_t len) const;
  bool contains(uint64_t gpa, uint64_t len) const;

  Result<> write(uint64_t gpa, std::span<const uint8_t> data);
  Result<> read(uint64_t gpa, std::span<uint8_t> out) const;
  Result<> fill(uint64_t gpa, uint8_t value, uint64_t len);

  // Pages the VMM writes itself (device buffers, used rings) are not in
  // KVM's dirty log. Once enabled, devices record them here, so that a
  // clone's reset discards them like the guest's own writes.
  void enable_host_write_log();
  // Thread-safe (the I/O thread logs while vCPUs run); no-op when off.
  void log_host_write(uint64_t gpa, uint64_t len) {
    if (!host_writes_.empty()) log_host_write_slow(gpa, len);
  }
  // ORs region `region`'s logged pages into `bits` (one bit per page) and
  // clears them.
  void take_host_writes(size_t region, std::vector<uint64_t>& bits);

  template <class T>
  Result<> write_obj(uint64_t gpa, const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, {reinterpret_cast<const uint8_t*>(&v), sizeof(T)});
  }
  template <class T>
  Result<T> read_obj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    VIC_TRY(read(gpa, {reinterpret_cast<uint8_t*>(&v), sizeof(T)}));
    return v;
  }

 private:
  const MemoryRegion* find(uint64_t gpa, uint64_t len) const;
  void log_host_write_slow(uint64_t gpa, uint64_t len);

  uint64_t size_ = 0;
  Backing backing_ = Backing::Anonymous;
  UniqueFd memfd_;
  std::vector<Mapping> mappings_;
  std::vector<MemoryRegion> regions_;
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> host_writes_;  // per region, a bit per page
};

}  // namespace vicvmm
