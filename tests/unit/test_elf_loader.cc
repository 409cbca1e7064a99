#include <elf.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/elf_loader.h"
#include "vmm/boot/kernel_loader.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::error_of;
using vicvmm::test::kGiB;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

constexpr uint64_t kVirtBase = 0xffff'ffff'8100'0000ull;  // __START_KERNEL_map + 16 MiB

struct Segment {
  uint32_t type = PT_LOAD;
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  std::vector<uint8_t> data;
  uint64_t memsz = 0;  // 0: data.size()
};

// A minimal ELF64 x86-64 executable: header, program headers, segment data.
struct ElfBuilder {
  uint64_t entry = 0;
  std::vector<Segment> segments;

  std::vector<uint8_t> build() const {
    const uint64_t phoff = sizeof(Elf64_Ehdr);
    uint64_t data_off = phoff + segments.size() * sizeof(Elf64_Phdr);
    std::vector<uint8_t> out(data_off);

    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = phoff;
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(segments.size());
    std::memcpy(out.data(), &eh, sizeof(eh));

    for (size_t i = 0; i < segments.size(); i++) {
      const Segment& s = segments[i];
      Elf64_Phdr ph{};
      ph.p_type = s.type;
      ph.p_flags = PF_R | PF_X;
      ph.p_offset = out.size();
      ph.p_vaddr = s.vaddr ? s.vaddr : s.paddr;
      ph.p_paddr = s.paddr;
      ph.p_filesz = s.data.size();
      ph.p_memsz = s.memsz ? s.memsz : s.data.size();
      ph.p_align = 0x1000;
      std::memcpy(out.data() + phoff + i * sizeof(Elf64_Phdr), &ph, sizeof(ph));
      out.insert(out.end(), s.data.begin(), s.data.end());
    }
    return out;
  }
};

// A vmlinux-like image: text at 16 MiB linked high, data with a bss tail, a note.
ElfBuilder vmlinux_like() {
  ElfBuilder b;
  b.entry = 0x1000000;  // ENTRY(phys_startup_64): physical
  b.segments.push_back({PT_LOAD, 0x1000000, kVirtBase, std::vector<uint8_t>(0x3000, 0x90), 0});
  b.segments.push_back({PT_NOTE, 0x1003000, kVirtBase + 0x3000, std::vector<uint8_t>(16, 0x4e), 0});
  b.segments.push_back({PT_LOAD, 0x1200000, kVirtBase + 0x200000, std::vector<uint8_t>(0x800, 0xdd), 0x5000});
  return b;
}

// Patches a field of the built image in place.
template <class T>
void poke(std::vector<uint8_t>& img, size_t off, T v) {
  std::memcpy(img.data() + off, &v, sizeof(T));
}

size_t ph_off(size_t i, size_t field) { return sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr) + field; }

}  // namespace

TEST_CASE("elf: loads PT_LOAD segments at p_paddr and zeroes bss", "[elf]") {
  auto mem = make_mem(64 * kMiB);
  REQUIRE(mem.fill(0x1000000, 0xaa, 0x300000));  // stale bytes that bss must clear
  auto img = vmlinux_like().build();
  REQUIRE(is_elf(img));

  auto k = load_kernel(mem, img);
  REQUIRE(k);
  CHECK(k->kind == KernelKind::Elf);
  CHECK(k->entry_gpa == 0x1000000);
  CHECK(k->load_start == 0x1000000);
  CHECK(k->load_end == 0x1205000);
  CHECK(k->setup_header.empty());
  CHECK(k->initrd_addr_max == 0xffff'ffffu);

  CHECK(mem.read_obj<uint8_t>(0x1000000).value() == 0x90);
  CHECK(mem.read_obj<uint8_t>(0x1002fff).value() == 0x90);
  CHECK(mem.read_obj<uint8_t>(0x1003000).value() == 0xaa);  // PT_NOTE is not loaded
  CHECK(mem.read_obj<uint8_t>(0x1200000).value() == 0xdd);
  CHECK(mem.read_obj<uint8_t>(0x12007ff).value() == 0xdd);
  CHECK(mem.read_obj<uint8_t>(0x1200800).value() == 0);     // bss
  CHECK(mem.read_obj<uint8_t>(0x1204fff).value() == 0);     // end of bss
  CHECK(mem.read_obj<uint8_t>(0x1205000).value() == 0xaa);  // untouched after it
}

TEST_CASE("elf: a virtual e_entry is translated through its segment", "[elf]") {
  auto mem = make_mem(64 * kMiB);
  ElfBuilder b = vmlinux_like();
  b.entry = kVirtBase + 0x200;
  auto k = load_kernel(mem, b.build());
  REQUIRE(k);
  CHECK(k->entry_gpa == 0x1000200);
}

TEST_CASE("elf: identity-linked guests keep e_entry", "[elf]") {
  auto mem = make_mem(64 * kMiB);
  ElfBuilder b;
  b.entry = 0x100010;
  b.segments.push_back({PT_LOAD, 0x100000, 0, std::vector<uint8_t>(64, 0xf4), 0});
  auto k = load_kernel(mem, b.build());
  REQUIRE(k);
  CHECK(k->entry_gpa == 0x100010);
  CHECK(k->load_end == 0x100040);
}

TEST_CASE("elf: malformed images are rejected with their cause", "[elf]") {
  auto mem = make_mem(64 * kMiB);
  REQUIRE(mem.fill(0x1000000, 0xaa, 0x1000));
  auto img = vmlinux_like().build();
  auto load = [&](const std::vector<uint8_t>& i) { return error_of(load_kernel(mem, i)); };

  SECTION("truncated header") {
    img.resize(40);
    CHECK_THAT(load(img), Catch::Contains("header truncated"));
  }
  SECTION("ELF32") {
    img[EI_CLASS] = ELFCLASS32;
    CHECK_THAT(load(img), Catch::Contains("not ELF64"));
  }
  SECTION("big-endian") {
    img[EI_DATA] = ELFDATA2MSB;
    CHECK_THAT(load(img), Catch::Contains("little-endian"));
  }
  SECTION("wrong machine") {
    poke<uint16_t>(img, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
    CHECK_THAT(load(img), Catch::Contains("not x86-64"));
  }
  SECTION("not an executable") {
    poke<uint16_t>(img, offsetof(Elf64_Ehdr, e_type), ET_REL);
    CHECK_THAT(load(img), Catch::Contains("not an executable"));
  }
  SECTION("wrong program header size") {
    poke<uint16_t>(img, offsetof(Elf64_Ehdr, e_phentsize), 32);
    CHECK_THAT(load(img), Catch::Contains("program header size"));
  }
  SECTION("e_phoff beyond the file") {
    poke<uint64_t>(img, offsetof(Elf64_Ehdr, e_phoff), img.size() - 8);
    CHECK_THAT(load(img), Catch::Contains("program headers") && Catch::Contains("beyond"));
  }
  SECTION("e_phoff near 2^64") {
    poke<uint64_t>(img, offsetof(Elf64_Ehdr, e_phoff), ~uint64_t{0} - 16);
    CHECK_THAT(load(img), Catch::Contains("program headers") && Catch::Contains("beyond"));
  }
  SECTION("e_phnum beyond the file") {
    poke<uint16_t>(img, offsetof(Elf64_Ehdr, e_phnum), 0xffff);
    CHECK_THAT(load(img), Catch::Contains("program headers") && Catch::Contains("beyond"));
  }
  SECTION("no PT_LOAD segment") {
    ElfBuilder b;
    b.entry = 0x1000000;
    b.segments.push_back({PT_NOTE, 0x1000000, 0, std::vector<uint8_t>(8, 0), 0});
    CHECK_THAT(load(b.build()), Catch::Contains("no PT_LOAD"));
    poke<uint16_t>(img, offsetof(Elf64_Ehdr, e_phnum), 0);
    CHECK_THAT(load(img), Catch::Contains("no PT_LOAD"));
  }
  SECTION("p_offset + p_filesz beyond the file") {
    poke<uint64_t>(img, ph_off(2, offsetof(Elf64_Phdr, p_filesz)), 0x4000);
    CHECK_THAT(load(img), Catch::Contains("PT_LOAD 1") && Catch::Contains("beyond the"));
  }
  SECTION("p_offset overflowing") {
    poke<uint64_t>(img, ph_off(0, offsetof(Elf64_Phdr, p_offset)), ~uint64_t{0} - 4);
    CHECK_THAT(load(img), Catch::Contains("PT_LOAD 0") && Catch::Contains("beyond the"));
  }
  SECTION("p_filesz > p_memsz") {
    poke<uint64_t>(img, ph_off(0, offsetof(Elf64_Phdr, p_memsz)), 0x10);
    CHECK_THAT(load(img), Catch::Contains("p_filesz 0x3000 exceeds p_memsz 0x10"));
  }
  SECTION("p_paddr + p_memsz overflowing") {
    poke<uint64_t>(img, ph_off(0, offsetof(Elf64_Phdr, p_paddr)), ~uint64_t{0} - 0x1000);
    CHECK_THAT(load(img), Catch::Contains("overflows"));
  }
  SECTION("segment outside guest RAM") {
    poke<uint64_t>(img, ph_off(2, offsetof(Elf64_Phdr, p_paddr)), 64 * kMiB - 0x1000);
    CHECK_THAT(load(img), Catch::Contains("outside guest RAM"));
  }
  SECTION("segment above the 4 GiB identity map") {
    poke<uint64_t>(img, ph_off(2, offsetof(Elf64_Phdr, p_paddr)), 4 * kGiB);
    CHECK_THAT(load(img), Catch::Contains("above 4 GiB"));
  }
  SECTION("segment in the boot area below 1 MiB") {
    poke<uint64_t>(img, ph_off(0, offsetof(Elf64_Phdr, p_paddr)), 0x7000);
    CHECK_THAT(load(img), Catch::Contains("boot area"));
  }
  SECTION("entry outside every segment") {
    poke<uint64_t>(img, offsetof(Elf64_Ehdr, e_entry), 0x3000000);
    CHECK_THAT(load(img), Catch::Contains("entry point 0x3000000"));
  }
  // A rejected image writes nothing.
  CHECK(mem.read_obj<uint8_t>(0x1000000).value() == 0xaa);
}

TEST_CASE("kernel: data that is neither ELF nor bzImage is rejected", "[elf][bzimage]") {
  auto mem = make_mem(64 * kMiB);
  std::vector<uint8_t> junk(4096, 0x42);
  CHECK(error_of(load_kernel(mem, junk)) == "kernel: not a Linux kernel image (neither ELF nor bzImage)");
  CHECK_THAT(error_of(load_kernel(mem, {})), Catch::Contains("neither ELF nor bzImage"));
  std::vector<uint8_t> three = {0x7f, 'E', 'L'};
  CHECK_THAT(error_of(load_kernel(mem, three)), Catch::Contains("neither ELF nor bzImage"));
}
