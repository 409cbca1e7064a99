#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/bootparams.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::error_of;
using vicvmm::test::kGiB;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

bool same(const E820Entry& e, uint64_t addr, uint64_t size, uint32_t type) {
  return e.addr == addr && e.size == size && e.type == type;
}

std::vector<MemoryRegion> ram(uint64_t size) { return GuestMemory::x86_layout(size); }

BootParams read_zero_page(const GuestMemory& mem) {
  auto bp = mem.read_obj<BootParams>(kBootParamsGpa);
  REQUIRE(bp);
  return *bp;
}

std::string read_cstring(const GuestMemory& mem, uint64_t gpa, size_t max) {
  std::vector<uint8_t> buf(max);
  REQUIRE(mem.read(gpa, buf));
  const auto* chars = reinterpret_cast<const char*>(buf.data());
  return std::string(chars, strnlen(chars, max));
}

BootConfig config_for(const GuestMemory& mem) {
  BootConfig cfg;
  cfg.cmdline = "console=ttyS0 panic=1";
  cfg.ram = mem.regions();
  return cfg;
}

}  // namespace

TEST_CASE("boot params: layout matches the uapi offsets", "[bootparams]") {
  CHECK(sizeof(BootParams) == 4096);
  CHECK(offsetof(BootParams, hdr) == 0x1f1);
  CHECK(offsetof(BootParams, e820_entries) == 0x1e8);
  CHECK(offsetof(BootParams, e820_table) == 0x2d0);
  CHECK(offsetof(BootParams, ext_ramdisk_image) == 0xc0);
  CHECK(offsetof(BootParams, hdr) + offsetof(SetupHeader, cmd_line_ptr) == 0x228);
  CHECK(offsetof(BootParams, hdr) + offsetof(SetupHeader, pref_address) == 0x258);
  CHECK(sizeof(E820Entry) == 20);
}

TEST_CASE("e820: low RAM is split around the mailbox and MP table", "[bootparams][e820]") {
  auto map = e820_map(ram(256 * kMiB), {});
  REQUIRE(map.size() == 3);
  CHECK(same(map[0], 0, 0x7d000, kE820Ram));
  CHECK(same(map[1], 0x7d000, 0x100000 - 0x7d000, kE820Reserved));
  CHECK(same(map[2], 0x100000, 256 * kMiB - 0x100000, kE820Ram));

  // The mailbox page and the MP table lie inside the reserved entry.
  CHECK(map[1].addr <= VIC_MAILBOX_GPA);
  CHECK(VIC_MAILBOX_GPA + VIC_MAILBOX_SIZE <= map[1].addr + map[1].size);
  CHECK(map[1].addr <= kMpTableGpa);
  CHECK(kMpTableLimit <= map[1].addr + map[1].size);
}

TEST_CASE("e820: RAM above 4 GiB becomes its own entry", "[bootparams][e820]") {
  auto map = e820_map(ram(5 * kGiB), {});
  REQUIRE(map.size() == 4);
  CHECK(same(map[2], 0x100000, 3 * kGiB - 0x100000, kE820Ram));
  CHECK(same(map[3], 4 * kGiB, 2 * kGiB, kE820Ram));
}

TEST_CASE("e820: extra reserved ranges are carved out, merged and sorted", "[bootparams][e820]") {
  std::vector<GuestRange> reserved = {
      {0x3000000, 0x1000},   // inside RAM: splits it
      {0x2000000, 0x2000},   // out of order
      {0x2001000, 0x3000},   // overlaps the previous one: merged
      {0x4000000, 0},        // empty: dropped
  };
  auto map = e820_map(ram(128 * kMiB), reserved);
  REQUIRE(map.size() == 7);
  CHECK(same(map[2], 0x100000, 0x2000000 - 0x100000, kE820Ram));
  CHECK(same(map[3], 0x2000000, 0x4000, kE820Reserved));
  CHECK(same(map[4], 0x2004000, 0x3000000 - 0x2004000, kE820Ram));
  CHECK(same(map[5], 0x3000000, 0x1000, kE820Reserved));
  CHECK(same(map[6], 0x3001000, 128 * kMiB - 0x3001000, kE820Ram));
  for (size_t i = 1; i < map.size(); i++) CHECK(map[i - 1].addr + map[i - 1].size <= map[i].addr);
}

TEST_CASE("e820: a reserved range outside RAM is listed without touching RAM", "[bootparams][e820]") {
  std::vector<GuestRange> reserved = {{0xfe000000, 0x1000}};  // e.g. an MMIO doorbell page
  auto map = e820_map(ram(64 * kMiB), reserved);
  REQUIRE(map.size() == 4);
  CHECK(same(map[2], 0x100000, 63 * kMiB, kE820Ram));
  CHECK(same(map[3], 0xfe000000, 0x1000, kE820Reserved));
}

TEST_CASE("boot params: header fields, e820 and command line are written", "[bootparams]") {
  auto mem = make_mem(256 * kMiB);
  BootConfig cfg = config_for(mem);
  cfg.initrd_gpa = 0x8000000;
  cfg.initrd_size = 0x123456;
  REQUIRE(write_boot_params(mem, cfg));

  BootParams bp = read_zero_page(mem);
  CHECK(bp.hdr.type_of_loader == 0xff);
  CHECK(bp.hdr.boot_flag == 0xaa55);
  CHECK(bp.hdr.header == 0x53726448);
  CHECK(bp.hdr.loadflags == (kLoadedHigh | kCanUseHeap));
  CHECK(bp.hdr.heap_end_ptr == 0xde00);
  CHECK(bp.hdr.cmd_line_ptr == kCmdlineGpa);
  CHECK(bp.hdr.cmdline_size == cfg.cmdline.size() + 1);
  CHECK(bp.ext_cmd_line_ptr == 0);
  CHECK(bp.hdr.ramdisk_image == 0x8000000);
  CHECK(bp.hdr.ramdisk_size == 0x123456);
  CHECK(bp.ext_ramdisk_image == 0);
  CHECK(bp.ext_ramdisk_size == 0);
  REQUIRE(bp.e820_entries == 3);
  CHECK(same(bp.e820_table[0], 0, 0x7d000, kE820Ram));
  CHECK(same(bp.e820_table[2], 0x100000, 255 * kMiB, kE820Ram));
  CHECK(read_cstring(mem, kCmdlineGpa, kCmdlineMaxSize) == cfg.cmdline);
}

TEST_CASE("boot params: an initrd above 4 GiB uses the ext_ramdisk fields", "[bootparams]") {
  auto mem = make_mem(5 * kGiB);
  BootConfig cfg = config_for(mem);
  cfg.initrd_gpa = 0x1'2345'6000;
  cfg.initrd_size = 0x1000;
  REQUIRE(write_boot_params(mem, cfg));
  BootParams bp = read_zero_page(mem);
  CHECK(bp.hdr.ramdisk_image == 0x2345'6000u);
  CHECK(bp.ext_ramdisk_image == 1u);
  CHECK(bp.hdr.ramdisk_size == 0x1000u);
  CHECK(bp.e820_entries == 4);
}

TEST_CASE("boot params: no initrd leaves the ramdisk fields zero", "[bootparams]") {
  auto mem = make_mem(64 * kMiB);
  BootConfig cfg = config_for(mem);
  cfg.initrd_gpa = 0x2000000;  // ignored: size 0
  REQUIRE(write_boot_params(mem, cfg));
  BootParams bp = read_zero_page(mem);
  CHECK(bp.hdr.ramdisk_image == 0);
  CHECK(bp.hdr.ramdisk_size == 0);
}

TEST_CASE("boot params: a kernel's setup header is kept and overlaid", "[bootparams]") {
  auto mem = make_mem(64 * kMiB);
  SetupHeader kernel_hdr{};
  kernel_hdr.setup_sects = 27;
  kernel_hdr.version = 0x020f;
  kernel_hdr.loadflags = kLoadedHigh | 0x02;  // KASLR_FLAG as the kernel reports it
  kernel_hdr.initrd_addr_max = 0x7fffffff;
  kernel_hdr.cmdline_size = 2047;
  kernel_hdr.init_size = 0x1234000;
  BootConfig cfg = config_for(mem);
  auto* p = reinterpret_cast<const uint8_t*>(&kernel_hdr);
  cfg.setup_header.assign(p, p + sizeof(kernel_hdr));
  REQUIRE(write_boot_params(mem, cfg));

  BootParams bp = read_zero_page(mem);
  CHECK(bp.hdr.setup_sects == 27);
  CHECK(bp.hdr.version == 0x020f);
  CHECK(bp.hdr.initrd_addr_max == 0x7fffffffu);
  CHECK(bp.hdr.init_size == 0x1234000u);
  CHECK(bp.hdr.loadflags == (kLoadedHigh | 0x02 | kCanUseHeap));
  CHECK(bp.hdr.type_of_loader == 0xff);
  CHECK(bp.hdr.header == kHdrSMagic);
}

TEST_CASE("boot params: malformed configurations are rejected", "[bootparams]") {
  auto mem = make_mem(64 * kMiB);
  BootConfig cfg = config_for(mem);

  SECTION("command line too long") {
    cfg.cmdline = std::string(kCmdlineMaxSize, 'a');
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("command line has 2048 bytes"));
  }
  SECTION("command line with a NUL") {
    cfg.cmdline = std::string("a\0b", 3);
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("NUL"));
  }
  SECTION("command line longer than the kernel accepts") {
    SetupHeader h{};
    h.cmdline_size = 8;
    auto* p = reinterpret_cast<const uint8_t*>(&h);
    cfg.setup_header.assign(p, p + sizeof(h));
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("kernel accepts at most 8"));
  }
  SECTION("setup header larger than the zero page's area") {
    cfg.setup_header.assign(kSetupHeaderMaxBytes + 1, 0);
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("setup header"));
  }
  SECTION("initrd outside RAM") {
    cfg.initrd_gpa = 63 * kMiB;
    cfg.initrd_size = 2 * kMiB;
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("initrd") && Catch::Contains("outside"));
  }
  SECTION("no RAM") {
    cfg.ram.clear();
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("no RAM"));
  }
  SECTION("reserved range wrapping around") {
    cfg.reserved = {{0xffff'ffff'ffff'f000ull, 0x2000}};
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("wraps"));
  }
  SECTION("too many e820 entries") {
    for (uint64_t i = 0; i < 70; i++) cfg.reserved.push_back({0x2000000 + i * 0x2000, 0x1000});
    CHECK_THAT(error_of(write_boot_params(mem, cfg)), Catch::Contains("e820 map needs"));
  }
  SECTION("guest RAM too small for the command line") {
    auto tiny = make_mem(0x10000);
    BootConfig c = config_for(tiny);
    CHECK_THAT(error_of(write_boot_params(tiny, c)), Catch::Contains("writing the command line"));
  }
}
