#include "vmm/boot/page_tables.h"

#include <array>

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

constexpr uint64_t kEntriesPerTable = 512;
constexpr uint64_t k2MiB = 0x20'0000;
constexpr uint64_t kTableFlags = kPtePresent | kPteWritable;

using Table = std::array<uint64_t, kEntriesPerTable>;

Result<> write_table(GuestMemory& mem, uint64_t gpa, const Table& t, const char* what) {
  auto r = mem.write_obj(gpa, t);
  if (!r) return with_context(r.error(), fmt::format("boot page tables: writing the {}", what));
  return {};
}

}  // namespace

Result<uint64_t> write_identity_page_tables(GuestMemory& mem) {
  // Tables are fully written (zeros included) so stale memory never leaks in.
  Table pml4{};
  pml4[0] = kPdptGpa | kTableFlags;
  VIC_TRY(write_table(mem, kPml4Gpa, pml4, "PML4"));

  Table pdpt{};
  for (uint64_t i = 0; i < kPdCount; i++) pdpt[i] = (kPdGpa + i * kPageSize) | kTableFlags;
  VIC_TRY(write_table(mem, kPdptGpa, pdpt, "PDPT"));

  for (uint64_t i = 0; i < kPdCount; i++) {
    Table pd{};
    for (uint64_t j = 0; j < kEntriesPerTable; j++)
      pd[j] = ((i * kEntriesPerTable + j) * k2MiB) | kTableFlags | kPteLargePage;
    VIC_TRY(write_table(mem, kPdGpa + i * kPageSize, pd, "page directory"));
  }
  static_assert(kPdCount * kEntriesPerTable * k2MiB == kIdentityMapEnd);
  return kPml4Gpa;
}

}  // namespace vicvmm::boot
