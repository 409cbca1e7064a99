#include "vmm/boot/elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

// True when a + b does not fit in 64 bits.
bool add_overflows(uint64_t a, uint64_t b) { return b > std::numeric_limits<uint64_t>::max() - a; }

// True when [off, off + len) lies inside a buffer of `size` bytes.
bool in_file(uint64_t off, uint64_t len, size_t size) { return off <= size && len <= size - off; }

template <class T>
T read_at(std::span<const uint8_t> image, uint64_t off) {
  T v;
  std::memcpy(&v, image.data() + off, sizeof(T));
  return v;
}

Result<Elf64_Ehdr> read_header(std::span<const uint8_t> image) {
  if (image.size() < sizeof(Elf64_Ehdr))
    return err("ELF kernel: header truncated ({} of {} bytes)", image.size(), sizeof(Elf64_Ehdr));
  auto eh = read_at<Elf64_Ehdr>(image, 0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64)
    return err("ELF kernel: class {} is not ELF64 (a 64-bit kernel is required)", eh.e_ident[EI_CLASS]);
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return err("ELF kernel: not little-endian");
  if (eh.e_machine != EM_X86_64) return err("ELF kernel: machine {} is not x86-64 ({})", eh.e_machine, EM_X86_64);
  if (eh.e_type != ET_EXEC) return err("ELF kernel: type {} is not an executable (ET_EXEC)", eh.e_type);
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    return err("ELF kernel: program header size {} is not {}", eh.e_phentsize, sizeof(Elf64_Phdr));
  return eh;
}

Result<std::vector<Elf64_Phdr>> read_load_segments(std::span<const uint8_t> image, const Elf64_Ehdr& eh) {
  uint64_t table_len = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (!in_file(eh.e_phoff, table_len, image.size()))
    return err("ELF kernel: program headers ({} at offset {:#x}) lie beyond the {}-byte file", eh.e_phnum,
               eh.e_phoff, image.size());
  std::vector<Elf64_Phdr> loads;
  for (uint64_t i = 0; i < eh.e_phnum; i++) {
    auto ph = read_at<Elf64_Phdr>(image, eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type == PT_LOAD) loads.push_back(ph);
  }
  if (loads.empty()) return err("ELF kernel: no PT_LOAD segments");
  return loads;
}

// Every check a segment must pass before anything is written.
Result<> check_segment(const GuestMemory& mem, std::span<const uint8_t> image, const Elf64_Phdr& ph, size_t i) {
  if (ph.p_filesz > ph.p_memsz)
    return err("ELF kernel: PT_LOAD {}: p_filesz {:#x} exceeds p_memsz {:#x}", i, ph.p_filesz, ph.p_memsz);
  if (!in_file(ph.p_offset, ph.p_filesz, image.size()))
    return err("ELF kernel: PT_LOAD {}: file range {:#x}+{:#x} lies beyond the {}-byte file", i, ph.p_offset,
               ph.p_filesz, image.size());
  if (add_overflows(ph.p_paddr, ph.p_memsz))
    return err("ELF kernel: PT_LOAD {}: address {:#x}+{:#x} overflows", i, ph.p_paddr, ph.p_memsz);
  if (ph.p_paddr < kKernelMinGpa)
    return err("ELF kernel: PT_LOAD {} at {:#x} overlaps the boot area below {:#x}", i, ph.p_paddr, kKernelMinGpa);
  if (ph.p_paddr + ph.p_memsz > kIdentityMapEnd)
    return err("ELF kernel: PT_LOAD {} ({:#x}+{:#x}) ends above 4 GiB, outside the boot identity map", i,
               ph.p_paddr, ph.p_memsz);
  if (!mem.contains(ph.p_paddr, ph.p_memsz))
    return err("ELF kernel: PT_LOAD {} ({:#x}+{:#x}) is outside guest RAM", i, ph.p_paddr, ph.p_memsz);
  return {};
}

Result<> load_segment(GuestMemory& mem, std::span<const uint8_t> image, const Elf64_Phdr& ph) {
  VIC_TRY(mem.write(ph.p_paddr, image.subspan(ph.p_offset, ph.p_filesz)));
  return mem.fill(ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);  // bss
}

bool in_range(uint64_t addr, uint64_t start, uint64_t len) { return addr >= start && addr - start < len; }

Result<uint64_t> entry_gpa(uint64_t e_entry, const std::vector<Elf64_Phdr>& loads) {
  for (const auto& ph : loads)
    if (in_range(e_entry, ph.p_paddr, ph.p_memsz)) return e_entry;
  for (const auto& ph : loads)
    if (in_range(e_entry, ph.p_vaddr, ph.p_memsz)) return ph.p_paddr + (e_entry - ph.p_vaddr);
  return err("ELF kernel: entry point {:#x} is not inside any PT_LOAD segment", e_entry);
}

}  // namespace

bool is_elf(std::span<const uint8_t> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

Result<LoadedKernel> load_elf_kernel(GuestMemory& mem, std::span<const uint8_t> image) {
  VIC_ASSIGN(Elf64_Ehdr eh, read_header(image));
  VIC_ASSIGN(std::vector<Elf64_Phdr> loads, read_load_segments(image, eh));
  for (size_t i = 0; i < loads.size(); i++) VIC_TRY(check_segment(mem, image, loads[i], i));
  VIC_ASSIGN(uint64_t entry, entry_gpa(eh.e_entry, loads));

  LoadedKernel k;
  k.kind = KernelKind::Elf;
  k.entry_gpa = entry;
  k.load_start = std::numeric_limits<uint64_t>::max();
  for (const auto& ph : loads) {
    VIC_TRY(load_segment(mem, image, ph));
    k.load_start = std::min(k.load_start, ph.p_paddr);
    k.load_end = std::max(k.load_end, ph.p_paddr + ph.p_memsz);
  }
  k.initrd_addr_max = kIdentityMapEnd - 1;  // no header to say otherwise; load_initrd caps it further
  return k;
}

}  // namespace vicvmm::boot
