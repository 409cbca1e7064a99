// libFuzzer target: load_elf_kernel() on an untrusted ELF64 kernel image
// (the input is the file), into 64 MiB of guest RAM.
//
// On success: the load range lies in guest RAM between 1 MiB and 4 GiB,
// the entry point is inside it, and the last PT_LOAD segment's bytes (and
// the start of its bss) are in guest memory as the file has them.
// Run: tools/fuzz elf [SECONDS]
#include <elf.h>

#include <cstdint>
#include <cstring>
#include <optional>

#include "tests/fuzz/fuzz_check.h"
#include "vmm/boot/elf_loader.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;

namespace {
constexpr uint64_t kMem = 64ull << 20;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  std::span<const uint8_t> image(data, size);
  (void)is_elf(image);
  auto k = load_elf_kernel(mem, image);
  if (!k) return 0;

  FUZZ_CHECK(k->kind == KernelKind::Elf && k->setup_header.empty());
  FUZZ_CHECK(k->load_start >= kKernelMinGpa && k->load_start <= k->load_end);
  FUZZ_CHECK(k->load_end <= kIdentityMapEnd && k->load_end <= kMem);
  FUZZ_CHECK(k->entry_gpa >= k->load_start && k->entry_gpa < k->load_end);
  FUZZ_CHECK(k->initrd_addr_max < kIdentityMapEnd);

  // It parsed, so the header and program headers are inside the file.
  Elf64_Ehdr eh;
  std::memcpy(&eh, data, sizeof eh);
  std::optional<Elf64_Phdr> last;
  Elf64_Phdr ph;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    std::memcpy(&ph, data + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_LOAD) continue;
    FUZZ_CHECK(ph.p_filesz <= ph.p_memsz && ph.p_offset <= size && ph.p_filesz <= size - ph.p_offset);
    FUZZ_CHECK(ph.p_paddr >= k->load_start && ph.p_paddr + ph.p_memsz <= k->load_end);
    last = ph;
  }
  FUZZ_CHECK(last.has_value());
  // Written last, so nothing overwrote it: the file's bytes, then zeros.
  auto host = mem.host_ptr(last->p_paddr, last->p_memsz);
  FUZZ_CHECK(host.has_value());
  FUZZ_CHECK(std::memcmp(*host, data + last->p_offset, last->p_filesz) == 0);
  uint64_t bss = std::min<uint64_t>(last->p_memsz - last->p_filesz, 4096);
  for (uint64_t i = 0; i < bss; ++i) FUZZ_CHECK((*host)[last->p_filesz + i] == 0);
  return 0;
}
