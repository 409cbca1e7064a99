#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>
#include <sys/stat.h>

namespace vicvmm {

const char* backing_name(Backing b) {
  switch (b) {
    case Backing::Anonymous: return "anonymous";
    case Backing::SharedMemfd: return "shared memfd";
    case Backing::PrivateFile: return "private file";
  }
  return "?";
}

std::vector<MemoryRegion> GuestMemory::x86_layout(uint64_t size) {
  std::vector<MemoryRegion> r;
  if (size <= kMmioHoleStart) {
    r.push_back({0, size, nullptr, 0});
  } else {
    r.push_back({0, kMmioHoleStart, nullptr, 0});
    r.push_back({k4GiB, size - kMmioHoleStart, nullptr, kMmioHoleStart});
  }
  return r;
}

Result<GuestMemory> GuestMemory::create(uint64_t size, Backing backing, int fd) {
  if (size == 0 || size % 4096 != 0)
    return err("guest memory: size {} is not a positive multiple of 4 KiB", size);

  GuestMemory mem;
  mem.size_ = size;
  mem.backing_ = backing;

  int map_fd = -1;
  int flags = 0;
  switch (backing) {
    case Backing::Anonymous:
      flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
      break;
    case Backing::SharedMemfd: {
      mem.memfd_ = UniqueFd(memfd_create("vicvmm-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING));
      if (!mem.memfd_) return sys_err("guest memory: memfd_create");
      if (ftruncate(mem.memfd_.get(), static_cast<off_t>(size)) != 0)
        return sys_err("guest memory: sizing memfd to {} bytes", size);
      map_fd = mem.memfd_.get();
      flags = MAP_SHARED | MAP_NORESERVE;
      break;
    }
    case Backing::PrivateFile: {
      struct stat st {};
      if (fd < 0 || fstat(fd, &st) != 0) return err("guest memory: private file backing needs an open fd");
      if (static_cast<uint64_t>(st.st_size) < size)
        return err("guest memory: backing file has {} bytes, guest needs {}", st.st_size, size);
      map_fd = fd;
      flags = MAP_PRIVATE | MAP_NORESERVE;
      break;
    }
  }

  for (MemoryRegion r : x86_layout(size)) {
    void* p = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, flags, map_fd,
                   map_fd >= 0 ? static_cast<off_t>(r.file_offset) : 0);
    if (p == MAP_FAILED) return sys_err("guest memory: mapping {} bytes ({})", r.size, backing_name(backing));
    mem.mappings_.emplace_back(p, r.size);
    r.host = static_cast<uint8_t*>(p);
    mem.regions_.push_back(r);
  }
  return mem;
}

const MemoryRegion* GuestMemory::find(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    // Overflow-safe: gpa >= r.gpa, and len fits in what is left of the region.
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) return &r;
  }
  return nullptr;
}

bool GuestMemory::contains(uint64_t gpa, uint64_t len) const { return find(gpa, len) != nullptr; }

Result<uint8_t*> GuestMemory::host_ptr(uint64_t gpa, uint64_t len) {
  const MemoryRegion* r = find(gpa, len);
  if (!r) return err("guest memory: range {:#x}+{:#x} is outside guest RAM", gpa, len);
  return r->host + (gpa - r->gpa);
}

Result<const uint8_t*> GuestMemory::host_ptr(uint64_t gpa, uint64_t len) const {
  const MemoryRegion* r = find(gpa, len);
  if (!r) return err("guest memory: range {:#x}+{:#x} is outside guest RAM", gpa, len);
  return r->host + (gpa - r->gpa);
}

Result<> GuestMemory::write(uint64_t gpa, std::span<const uint8_t> data) {
  VIC_ASSIGN(uint8_t * p, host_ptr(gpa, data.size()));
  std::memcpy(p, data.data(), data.size());
  return {};
}

Result<> GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
  VIC_ASSIGN(const uint8_t* p, host_ptr(gpa, out.size()));
  std::memcpy(out.data(), p, out.size());
  return {};
}

Result<> GuestMemory::fill(uint64_t gpa, uint8_t value, uint64_t len) {
  VIC_ASSIGN(uint8_t * p, host_ptr(gpa, len));
  std::memset(p, value, len);
  return {};
}

}  // namespace vicvmm

namespace vicvmm {

void GuestMemory::enable_host_write_log() {
  if (!host_writes_.empty()) return;
  for (const auto& r : regions_) {
    size_t words = (r.size / 4096 + 63) / 64;
    auto bits = std::make_unique<std::atomic<uint64_t>[]>(words);
    for (size_t i = 0; i < words; ++i) bits[i].store(0, std::memory_order_relaxed);
    host_writes_.push_back(std::move(bits));
  }
}

void GuestMemory::log_host_write_slow(uint64_t gpa, uint64_t len) {
  if (len == 0) return;
  for (size_t i = 0; i < regions_.size(); ++i) {
    const auto& r = regions_[i];
    if (gpa < r.gpa || gpa - r.gpa >= r.size) continue;
    uint64_t first = (gpa - r.gpa) / 4096;
    uint64_t end = (std::min(gpa - r.gpa + len, r.size) + 4095) / 4096;  // pages [first, end)
    // A word at a time: a hostile 4 GiB buffer costs 16 K ORs, not 1 M.
    for (uint64_t p = first; p < end;) {
      uint64_t n = std::min<uint64_t>(64 - p % 64, end - p);
      uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << (p % 64);
      host_writes_[i][p / 64].fetch_or(mask, std::memory_order_relaxed);
      p += n;
    }
    return;
  }
}

void GuestMemory::take_host_writes(size_t region, std::vector<uint64_t>& bits) {
  if (region >= host_writes_.size()) return;
  const size_t words = std::min(bits.size(), (regions_[region].size / 4096 + 63) / 64);
  for (size_t w = 0; w < words; ++w) bits[w] |= host_writes_[region][w].exchange(0, std::memory_order_relaxed);
}

}  // namespace vicvmm
