#include <cstdint>
#include <initializer_list>
#include <optional>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/page_tables.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::error_of;
using vicvmm::test::kGiB;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

constexpr uint64_t kAddrMask = 0x000f'ffff'ffff'f000ull;

// Walks 4-level tables like the MMU: nullopt when an entry is not present.
std::optional<uint64_t> translate(const GuestMemory& mem, uint64_t cr3, uint64_t va) {
  uint64_t table = cr3 & kAddrMask;
  for (int level = 3; level >= 0; level--) {
    unsigned shift = 12 + 9 * static_cast<unsigned>(level);
    uint64_t entry = mem.read_obj<uint64_t>(table + ((va >> shift) & 0x1ff) * 8).value();
    if (!(entry & kPtePresent)) return std::nullopt;
    if (!(entry & kPteWritable)) return std::nullopt;  // the boot tables are all writable
    constexpr uint64_t k2MiBMask = (1ull << 21) - 1;
    if (level == 1 && (entry & kPteLargePage)) return (entry & kAddrMask & ~k2MiBMask) | (va & k2MiBMask);
    if (level == 0) return (entry & kAddrMask) | (va & 0xfff);
    table = entry & kAddrMask;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("page tables: identity map of the first 4 GiB with 2 MiB pages", "[page_tables]") {
  auto mem = make_mem(64 * kMiB);
  // Garbage first, so the test sees that unused entries are cleared.
  REQUIRE(mem.fill(kPml4Gpa, 0xff, 0x6000));
  auto cr3 = write_identity_page_tables(mem);
  REQUIRE(cr3);
  CHECK(*cr3 == kPml4Gpa);

  for (uint64_t va : std::initializer_list<uint64_t>{0, 0x1000, 2 * kMiB - 1, 2 * kMiB, 0x1000200, 1 * kGiB - 1,
                                                     1 * kGiB, 3 * kGiB + 5, 4 * kGiB - 1}) {
    INFO("va = " << std::hex << va);
    auto pa = translate(mem, *cr3, va);
    REQUIRE(pa);
    CHECK(*pa == va);
  }
  CHECK_FALSE(translate(mem, *cr3, 4 * kGiB));    // PDPT[4] is empty
  CHECK_FALSE(translate(mem, *cr3, 512 * kGiB));  // PML4[1] is empty
}

TEST_CASE("page tables: exact entry values", "[page_tables]") {
  auto mem = make_mem(64 * kMiB);
  REQUIRE(write_identity_page_tables(mem));
  CHECK(mem.read_obj<uint64_t>(kPml4Gpa).value() == (kPdptGpa | 0x3));
  CHECK(mem.read_obj<uint64_t>(kPml4Gpa + 8).value() == 0);
  for (uint64_t i = 0; i < 4; i++)
    CHECK(mem.read_obj<uint64_t>(kPdptGpa + 8 * i).value() == ((kPdGpa + i * 0x1000) | 0x3));
  CHECK(mem.read_obj<uint64_t>(kPdptGpa + 8 * 4).value() == 0);
  CHECK(mem.read_obj<uint64_t>(kPdGpa).value() == 0x83);
  CHECK(mem.read_obj<uint64_t>(kPdGpa + 8).value() == (2 * kMiB | 0x83));
  CHECK(mem.read_obj<uint64_t>(kPdGpa + 3 * 0x1000 + 511 * 8).value() == ((4 * kGiB - 2 * kMiB) | 0x83));
}

TEST_CASE("page tables: too little RAM is an error", "[page_tables]") {
  auto mem = make_mem(0xc000);  // PML4 and PDPT fit, the page directories do not
  CHECK_THAT(error_of(write_identity_page_tables(mem)), Catch::Contains("page directory"));
  auto tiny = make_mem(0x9000);
  CHECK_THAT(error_of(write_identity_page_tables(tiny)), Catch::Contains("PML4"));
}
