#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <limits>

#include "tests/unit/test_helpers.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/unique_fd.h"

using namespace vicvmm;
using vicvmm::test::kGiB;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

UniqueFd make_memfd(uint64_t size) {
  UniqueFd fd(memfd_create("vicvmm-test", MFD_CLOEXEC));
  REQUIRE(fd.valid());
  REQUIRE(ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
  return fd;
}

}  // namespace

TEST_CASE("guest memory: the last byte is accessible, one past it is not", "[guest_memory]") {
  auto mem = make_mem(16 * kMiB);
  const std::array<uint8_t, 1> byte{0x5a};
  REQUIRE(mem.write(16 * kMiB - 1, byte));
  CHECK(mem.read_obj<uint8_t>(16 * kMiB - 1).value() == 0x5a);
  CHECK(mem.contains(0, 16 * kMiB));
  CHECK_FALSE(mem.contains(0, 16 * kMiB + 1));
  CHECK_FALSE(mem.write(16 * kMiB, byte));
  CHECK_FALSE(mem.host_ptr(16 * kMiB - 1, 2));
  CHECK_FALSE(mem.read_obj<uint16_t>(16 * kMiB - 1));
}

TEST_CASE("guest memory: ranges that wrap around 2^64 fail", "[guest_memory]") {
  auto mem = make_mem(16 * kMiB);
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  CHECK_FALSE(mem.host_ptr(kMax, 2));
  CHECK_FALSE(mem.host_ptr(kMax - 1, 16));
  CHECK_FALSE(mem.host_ptr(0x1000, kMax));
  CHECK_FALSE(mem.contains(kMax, 1));
  auto r = mem.fill(kMax - 3, 0, 8);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("outside guest RAM"));
}

TEST_CASE("guest memory: x86 layout splits around the 32-bit MMIO hole", "[guest_memory]") {
  auto small = GuestMemory::x86_layout(512 * kMiB);
  REQUIRE(small.size() == 1);
  CHECK(small[0].gpa == 0);
  CHECK(small[0].size == 512 * kMiB);

  auto exact = GuestMemory::x86_layout(3 * kGiB);
  REQUIRE(exact.size() == 1);
  CHECK(exact[0].size == 3 * kGiB);

  auto big = GuestMemory::x86_layout(4 * kGiB);
  REQUIRE(big.size() == 2);
  CHECK(big[0].gpa == 0);
  CHECK(big[0].size == GuestMemory::kMmioHoleStart);
  CHECK(big[1].gpa == GuestMemory::k4GiB);
  CHECK(big[1].size == 1 * kGiB);
  CHECK(big[1].file_offset == GuestMemory::kMmioHoleStart);
}

TEST_CASE("guest memory: a range across the MMIO hole fails", "[guest_memory]") {
  auto mem = make_mem(4 * kGiB);
  REQUIRE(mem.regions().size() == 2);
  const uint64_t hole = GuestMemory::kMmioHoleStart;
  CHECK(mem.contains(hole - 4096, 4096));
  CHECK_FALSE(mem.contains(hole - 4096, 8192));
  CHECK_FALSE(mem.contains(hole, 1));
  CHECK_FALSE(mem.contains(GuestMemory::k4GiB - 1, 2));
  CHECK(mem.contains(GuestMemory::k4GiB, 4096));
  CHECK(mem.contains(GuestMemory::k4GiB + kGiB - 1, 1));
  CHECK_FALSE(mem.contains(GuestMemory::k4GiB + kGiB - 1, 2));
}

TEST_CASE("guest memory: rejects sizes that are not whole pages", "[guest_memory]") {
  CHECK_FALSE(GuestMemory::create(0, Backing::Anonymous));
  CHECK_FALSE(GuestMemory::create(4097, Backing::Anonymous));
}

TEST_CASE("guest memory: every backing can be created and used", "[guest_memory]") {
  constexpr uint64_t kSize = 2 * kMiB;
  const std::array<uint8_t, 4> data{1, 2, 3, 4};

  SECTION("anonymous") {
    auto mem = make_mem(kSize);
    CHECK(mem.backing() == Backing::Anonymous);
    CHECK(mem.memfd() == -1);
    REQUIRE(mem.write(0x1000, data));
    CHECK(mem.read_obj<uint32_t>(0x1000).value() == 0x04030201u);
  }
  SECTION("shared memfd: writes reach the memfd") {
    auto mem = GuestMemory::create(kSize, Backing::SharedMemfd);
    REQUIRE(mem);
    REQUIRE(mem->memfd() >= 0);
    REQUIRE(mem->write(0x2000, data));
    std::array<uint8_t, 4> back{};
    REQUIRE(pread(mem->memfd(), back.data(), back.size(), 0x2000) == 4);
    CHECK(back == data);
  }
  SECTION("private file over a memfd: copy-on-write, the file is untouched") {
    UniqueFd fd = make_memfd(kSize);
    const std::array<uint8_t, 4> original{9, 9, 9, 9};
    REQUIRE(pwrite(fd.get(), original.data(), original.size(), 0x3000) == 4);

    auto mem = GuestMemory::create(kSize, Backing::PrivateFile, fd.get());
    REQUIRE(mem);
    CHECK(mem->read_obj<uint32_t>(0x3000).value() == 0x09090909u);  // sees the file
    REQUIRE(mem->write(0x3000, data));
    CHECK(mem->read_obj<uint32_t>(0x3000).value() == 0x04030201u);

    std::array<uint8_t, 4> back{};
    REQUIRE(pread(fd.get(), back.data(), back.size(), 0x3000) == 4);
    CHECK(back == original);
  }
  SECTION("private file needs a large enough fd") {
    CHECK_FALSE(GuestMemory::create(kSize, Backing::PrivateFile, -1));
    UniqueFd fd = make_memfd(kSize / 2);
    auto mem = GuestMemory::create(kSize, Backing::PrivateFile, fd.get());
    REQUIRE_FALSE(mem);
    CHECK_THAT(mem.error().message, Catch::Contains("backing file"));
  }
}
