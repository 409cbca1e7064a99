// libFuzzer target: load_initrd() on an untrusted initrd image with the
// kernel end and address limit a (possibly hostile) kernel header gives.
//
// Input layout:
//   [0]      mode: bit 0 kernel_end is raw (else its low 32 bits x 4 KiB),
//            bit 1 addr_max is raw (else its low 32 bits x 4 KiB - 1),
//            bit 2 addr_max = UINT64_MAX,
//            bit 3 guest RAM of 5 GiB (split around the 32-bit MMIO hole)
//            instead of 64 MiB
//   [1..9)   kernel_end (u64 little-endian)
//   [9..17)  addr_max (u64 little-endian)
//   rest     the image
//
// On success: the image is page-aligned in the RAM region at 0, above the
// kernel end, below addr_max + 1 and 3 GiB, as high as those allow, and
// guest memory holds its bytes.
// Run: tools/fuzz initrd [SECONDS]
#include <cstdint>
#include <cstring>
#include <limits>

#include "tests/fuzz/fuzz_check.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;

namespace {
uint64_t le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory small = *GuestMemory::create(64ull << 20, Backing::Anonymous);
  static GuestMemory large = *GuestMemory::create(5ull << 30, Backing::Anonymous);  // MAP_NORESERVE
  if (size < 17) return 0;
  const uint8_t mode = data[0];
  uint64_t kernel_end = le64(data + 1), addr_max = le64(data + 9);
  if (!(mode & 1)) kernel_end = (kernel_end & 0xffffffff) << 12;
  if (!(mode & 2)) addr_max = ((addr_max & 0xffffffff) << 12) - 1;
  if (mode & 4) addr_max = std::numeric_limits<uint64_t>::max();
  GuestMemory& mem = (mode & 8) ? large : small;
  std::span<const uint8_t> image(data + 17, size - 17);

  auto p = load_initrd(mem, image, kernel_end, addr_max);
  if (!p) return 0;

  const uint64_t low_end = mem.regions()[0].size;
  const uint64_t limit = addr_max == std::numeric_limits<uint64_t>::max() ? addr_max : addr_max + 1;
  const uint64_t top = std::min({low_end, limit, kInitrdCeiling});
  FUZZ_CHECK(p->size == image.size() && p->size > 0);
  FUZZ_CHECK(p->gpa % kPageSize == 0);
  FUZZ_CHECK(p->gpa >= kernel_end);
  FUZZ_CHECK(p->gpa + p->size <= top);
  FUZZ_CHECK(top - (p->gpa + p->size) < kPageSize);  // as high as possible
  auto host = mem.host_ptr(p->gpa, p->size);
  FUZZ_CHECK(host.has_value());
  FUZZ_CHECK(std::memcmp(*host, image.data(), image.size()) == 0);
  return 0;
}
