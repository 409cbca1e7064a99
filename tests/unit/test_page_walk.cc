#include <catch2/catch.hpp>

#include "vmm/memory/page_walk.h"

using namespace vicvmm;

namespace {
// Builds a 4-level table set in guest memory: 0x1000 PML4, 0x2000 PDPT, 0x3000 PD, 0x4000 PT.
GuestMemory make_tables() {
  auto mem = GuestMemory::create(8 << 20, Backing::Anonymous);
  REQUIRE(mem);
  auto& m = *mem;
  constexpr uint64_t P = 1, W = 2, PS = 0x80;
  // gva 0xffff'8000'0000'0000 -> PML4 index 256
  REQUIRE(m.write_obj<uint64_t>(0x1000 + 256 * 8, 0x2000 | P | W));
  REQUIRE(m.write_obj<uint64_t>(0x2000 + 0 * 8, 0x3000 | P | W));          // PDPT[0] -> PD
  REQUIRE(m.write_obj<uint64_t>(0x2000 + 1 * 8, 0x4000'0000 | P | W | PS));  // PDPT[1]: 1 GiB page
  REQUIRE(m.write_obj<uint64_t>(0x3000 + 0 * 8, 0x4000 | P | W));          // PD[0] -> PT
  REQUIRE(m.write_obj<uint64_t>(0x3000 + 1 * 8, 0x600000 | P | W | PS));   // PD[1]: 2 MiB page
  REQUIRE(m.write_obj<uint64_t>(0x4000 + 5 * 8, 0x7000 | P | W));          // PT[5] -> 0x7000
  return std::move(m);
}
}  // namespace

TEST_CASE("page walk translates 4 KiB, 2 MiB and 1 GiB mappings") {
  GuestMemory m = make_tables();
  const uint64_t base = 0xffff'8000'0000'0000ull;
  CHECK(*translate_gva(m, 0x1000, base + 5 * 4096 + 0x123) == 0x7123);
  CHECK(*translate_gva(m, 0x1000, base + 0x200000 + 0x12345) == 0x612345);
  CHECK(*translate_gva(m, 0x1000, base + 0x4000'0000 + 0x1234567) == 0x4000'0000 + 0x1234567);
}

TEST_CASE("page walk reports unmapped addresses and reads across pages") {
  GuestMemory m = make_tables();
  const uint64_t base = 0xffff'8000'0000'0000ull;
  CHECK_FALSE(translate_gva(m, 0x1000, 0x1000));           // PML4[0] empty
  CHECK_FALSE(translate_gva(m, 0x1000, base + 6 * 4096));  // PT[6] empty
  REQUIRE(m.write(0x7ffe, std::vector<uint8_t>{0xaa, 0xbb}));
  uint8_t out[4] = {};
  // Two bytes at the end of the mapped page, then an unmapped page: short read.
  auto n = read_gva(m, 0x1000, base + 5 * 4096 + 0xffe, out);
  REQUIRE(n);
  CHECK(*n == 2);
  CHECK(out[0] == 0xaa);
  CHECK(out[1] == 0xbb);
}

TEST_CASE("page walk never reads outside guest memory") {
  auto mem = GuestMemory::create(1 << 20, Backing::Anonymous);
  REQUIRE(mem);
  // CR3 points past the end of RAM.
  CHECK_FALSE(translate_gva(*mem, 0x4000'0000, 0x1000));
}
