#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::error_of;
using vicvmm::test::kGiB;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

std::vector<uint8_t> image_with_magic(std::string_view magic, size_t size) {
  std::vector<uint8_t> img(size, 0x33);
  std::memcpy(img.data(), magic.data(), magic.size());
  return img;
}

std::vector<uint8_t> cpio(size_t size) { return image_with_magic("070701", size); }

constexpr uint64_t kKernelEnd = 0x1400000;
constexpr uint64_t kNoLimit = 0x7fffffff;

}  // namespace

TEST_CASE("initrd: placed page-aligned at the top of low RAM", "[initrd]") {
  auto mem = make_mem(64 * kMiB);
  auto img = cpio(10000);
  auto p = load_initrd(mem, img, kKernelEnd, kNoLimit);
  REQUIRE(p);
  CHECK(p->size == 10000);
  CHECK(p->gpa % kPageSize == 0);
  CHECK(p->gpa == 64 * kMiB - 3 * kPageSize);  // 10000 bytes need 3 pages
  std::vector<uint8_t> back(img.size());
  REQUIRE(mem.read(p->gpa, back));
  CHECK(back == img);
}

TEST_CASE("initrd: initrd_addr_max is the highest byte it may use", "[initrd]") {
  auto mem = make_mem(64 * kMiB);
  auto p = load_initrd(mem, cpio(2 * kPageSize), kKernelEnd, 32 * kMiB - 1);
  REQUIRE(p);
  CHECK(p->gpa == 32 * kMiB - 2 * kPageSize);
}

TEST_CASE("initrd: stays below 3 GiB with RAM above 4 GiB", "[initrd]") {
  auto mem = make_mem(5 * kGiB);
  auto p = load_initrd(mem, cpio(kPageSize), kKernelEnd, 0xffffffff);
  REQUIRE(p);
  CHECK(p->gpa == 3 * kGiB - kPageSize);
}

TEST_CASE("initrd: compressed formats the kernel unpacks are accepted", "[initrd]") {
  auto mem = make_mem(64 * kMiB);
  for (std::string_view magic : {std::string_view("070702"), std::string_view("\x1f\x8b"),
                                 std::string_view("\xfd" "7zXZ\x00", 6), std::string_view("\x28\xb5\x2f\xfd"),
                                 std::string_view("\x02\x21\x4c\x18"), std::string_view("BZh")}) {
    INFO("magic size " << magic.size());
    CHECK(load_initrd(mem, image_with_magic(magic, 512), kKernelEnd, kNoLimit));
  }
}

TEST_CASE("initrd: bad images and impossible placements are rejected", "[initrd]") {
  auto mem = make_mem(64 * kMiB);
  CHECK(error_of(load_initrd(mem, image_with_magic("hello", 512), kKernelEnd, kNoLimit)) ==
        "initrd: not a cpio archive or compressed image");
  CHECK_THAT(error_of(load_initrd(mem, image_with_magic("0707", 512), kKernelEnd, kNoLimit)),
             Catch::Contains("not a cpio"));
  CHECK_THAT(error_of(load_initrd(mem, {}, kKernelEnd, kNoLimit)), Catch::Contains("empty"));
  CHECK_THAT(error_of(load_initrd(mem, cpio(60 * kMiB), kKernelEnd, kNoLimit)), Catch::Contains("do not fit"));
  CHECK_THAT(error_of(load_initrd(mem, cpio(512), 64 * kMiB, kNoLimit)), Catch::Contains("do not fit"));
  CHECK_THAT(error_of(load_initrd(mem, cpio(512), kKernelEnd, 0x1000)), Catch::Contains("do not fit"));
  CHECK_THAT(error_of(load_initrd(mem, cpio(512), ~uint64_t{0}, kNoLimit)), Catch::Contains("kernel end"));
  // Fits exactly between the kernel and the top.
  CHECK(load_initrd(mem, cpio(64 * kMiB - kKernelEnd), kKernelEnd, kNoLimit));
}
