#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/bootparams.h"
#include "vmm/boot/bzimage_loader.h"
#include "vmm/boot/kernel_loader.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::error_of;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

constexpr size_t kHdr = kSetupHeaderOffset;

// A synthetic bzImage: boot sector + setup sectors with a setup header, then
// `payload_size` bytes of "protected-mode code" (byte i is i & 0xff).
struct BzImageBuilder {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint16_t xloadflags = kXlfKernel64 | kXlfCanBeLoadedAbove4G;
  uint8_t relocatable = 1;
  uint32_t kernel_alignment = 0x200000;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x40000;
  size_t payload_size = 0x10000;

  std::vector<uint8_t> build() const {
    size_t sects = setup_sects == 0 ? 4 : setup_sects;
    std::vector<uint8_t> img((sects + 1) * 512 + payload_size);
    SetupHeader h{};
    h.setup_sects = setup_sects;
    h.boot_flag = kBootFlagMagic;
    h.jump = 0x66eb;  // "jmp 0x268": the byte at 0x201 gives the header's end
    h.header = kHdrSMagic;
    h.version = version;
    h.loadflags = kLoadedHigh;
    h.initrd_addr_max = 0x7fffffff;
    h.kernel_alignment = kernel_alignment;
    h.relocatable_kernel = relocatable;
    h.xloadflags = xloadflags;
    h.cmdline_size = 2047;
    h.pref_address = pref_address;
    h.init_size = init_size;
    std::memcpy(img.data() + kHdr, &h, sizeof(h));
    for (size_t i = 0; i < payload_size; i++) img[(sects + 1) * 512 + i] = static_cast<uint8_t>(i);
    return img;
  }
};

template <class T>
void poke(std::vector<uint8_t>& img, size_t off, T v) {
  std::memcpy(img.data() + off, &v, sizeof(T));
}

}  // namespace

TEST_CASE("bzImage: loads protected-mode code at pref_address, entry at +0x200", "[bzimage]") {
  auto mem = make_mem(64 * kMiB);
  BzImageBuilder b;
  auto img = b.build();
  REQUIRE(is_bzimage(img));

  auto k = load_kernel(mem, img);
  REQUIRE(k);
  CHECK(k->kind == KernelKind::BzImage);
  CHECK(k->load_start == 0x1000000);
  CHECK(k->entry_gpa == 0x1000200);
  CHECK(k->load_end == 0x1000000 + 0x40000);  // init_size > payload
  CHECK(k->initrd_addr_max == 0x7fffffff);
  CHECK(mem.read_obj<uint8_t>(0x1000000).value() == 0);
  CHECK(mem.read_obj<uint8_t>(0x1000201).value() == 0x01);
  CHECK(mem.read_obj<uint8_t>(0x100ffff).value() == 0xff);

  // Header bytes run from 0x1f1 to 0x202 + image[0x201] = 0x268.
  REQUIRE(k->setup_header.size() == 0x268 - 0x1f1);
  CHECK(std::memcmp(k->setup_header.data(), img.data() + kHdr, k->setup_header.size()) == 0);
}

TEST_CASE("bzImage: load address rules", "[bzimage]") {
  auto mem = make_mem(64 * kMiB);
  BzImageBuilder b;

  SECTION("payload larger than init_size sets load_end") {
    b.init_size = 0x1000;
    auto k = load_kernel(mem, b.build());
    REQUIRE(k);
    CHECK(k->load_end == 0x1000000 + 0x10000);
  }
  SECTION("pref_address is honoured") {
    b.pref_address = 0x2000000;
    auto k = load_kernel(mem, b.build());
    REQUIRE(k);
    CHECK(k->load_start == 0x2000000);
    CHECK(k->entry_gpa == 0x2000200);
  }
  SECTION("relocatable kernels are aligned up to kernel_alignment") {
    b.pref_address = 0x1100000;
    auto k = load_kernel(mem, b.build());
    REQUIRE(k);
    CHECK(k->load_start == 0x1200000);
  }
  SECTION("non-relocatable kernels load exactly at pref_address") {
    b.pref_address = 0x1100000;
    b.relocatable = 0;
    auto k = load_kernel(mem, b.build());
    REQUIRE(k);
    CHECK(k->load_start == 0x1100000);
  }
  SECTION("no pref_address: the 16 MiB default") {
    b.pref_address = 0;
    auto k = load_kernel(mem, b.build());
    REQUIRE(k);
    CHECK(k->load_start == kKernelDefaultGpa);
  }
  SECTION("setup_sects 0 means 4") {
    b.setup_sects = 0;
    auto img = b.build();
    auto k = load_kernel(mem, img);
    REQUIRE(k);
    CHECK(mem.read_obj<uint8_t>(0x1000005).value() == 5);
  }
}

TEST_CASE("bzImage: its header feeds the zero page", "[bzimage][bootparams]") {
  auto mem = make_mem(64 * kMiB);
  auto k = load_kernel(mem, BzImageBuilder{}.build());
  REQUIRE(k);
  BootConfig cfg;
  cfg.cmdline = "console=ttyS0";
  cfg.ram = mem.regions();
  cfg.setup_header = k->setup_header;
  REQUIRE(write_boot_params(mem, cfg));
  auto bp = mem.read_obj<BootParams>(kBootParamsGpa).value();
  CHECK(bp.hdr.version == 0x020f);
  CHECK(bp.hdr.setup_sects == 4);
  CHECK(bp.hdr.xloadflags == (kXlfKernel64 | kXlfCanBeLoadedAbove4G));
  CHECK(bp.hdr.pref_address == 0x1000000);
  CHECK(bp.hdr.type_of_loader == 0xff);
  CHECK(bp.hdr.cmd_line_ptr == kCmdlineGpa);
}

TEST_CASE("bzImage: malformed images are rejected with their cause", "[bzimage]") {
  auto mem = make_mem(64 * kMiB);
  REQUIRE(mem.fill(0x1000000, 0xaa, 0x1000));
  BzImageBuilder b;
  auto img = b.build();
  auto load = [&](const std::vector<uint8_t>& i) { return error_of(load_kernel(mem, i)); };

  SECTION("bad boot sector magic") {
    poke<uint16_t>(img, 0x1fe, 0x1234);
    CHECK_THAT(load(img), Catch::Contains("bad boot sector magic 0x1234"));
  }
  SECTION("missing HdrS") {
    poke<uint32_t>(img, 0x202, 0x12345678);
    CHECK_THAT(load(img), Catch::Contains("HdrS"));
  }
  SECTION("truncated header") {
    img.resize(0x200);
    CHECK_THAT(load(img), Catch::Contains("truncated"));
  }
  SECTION("too old a protocol") {
    b.version = 0x0205;
    CHECK_THAT(load(b.build()), Catch::Contains("boot protocol 2.05 is too old"));
  }
  SECTION("no 64-bit entry") {
    b.xloadflags = 0;
    CHECK_THAT(load(b.build()), Catch::Contains("XLF_KERNEL_64"));
  }
  SECTION("setup_sects past the end of the file") {
    b.payload_size = 0;
    CHECK_THAT(load(b.build()), Catch::Contains("setup_sects 4") && Catch::Contains("past the end"));
    poke<uint8_t>(img, 0x1f1, 200);
    CHECK_THAT(load(img), Catch::Contains("setup_sects 200") && Catch::Contains("past the end"));
  }
  SECTION("protected-mode code too short for the entry") {
    b.payload_size = 0x100;
    CHECK_THAT(load(b.build()), Catch::Contains("too short"));
  }
  SECTION("init_size beyond guest RAM") {
    b.init_size = 64 * kMiB;
    CHECK_THAT(load(b.build()), Catch::Contains("does not fit in guest RAM"));
  }
  SECTION("load address in the boot area") {
    b.pref_address = 0x10000;
    b.relocatable = 0;
    CHECK_THAT(load(b.build()), Catch::Contains("boot area"));
  }
  SECTION("load address above 4 GiB") {
    b.pref_address = 0x1'0000'0000ull;
    CHECK_THAT(load(b.build()), Catch::Contains("above 4 GiB"));
  }
  SECTION("load address near 2^64") {
    b.pref_address = ~uint64_t{0} - 0x1000;
    CHECK_THAT(load(b.build()), Catch::Contains("above 4 GiB"));
  }
  CHECK(mem.read_obj<uint8_t>(0x1000000).value() == 0xaa);
}
