// libFuzzer target: load_bzimage_kernel() on an untrusted bzImage (the
// input is the file), into 64 MiB of guest RAM, then what boot_linux()
// does with the result: an initrd placed under the kernel's initrd_addr_max
// and above its load_end, and the zero page built from its header bytes.
//
// On success: the kernel lies in guest RAM between 1 MiB and 4 GiB, entry =
// load address + 0x200, the load address honours a relocatable kernel's
// power-of-two alignment, guest memory holds the protected-mode code, the
// header bytes are the file's (at most the zero page's header area), and
// the zero page, when written, carries the fields vicvmm sets.
// Run: tools/fuzz bzimage [SECONDS]
#include <bit>
#include <cstdint>
#include <cstring>

#include "tests/fuzz/fuzz_check.h"
#include "vmm/boot/bootparams.h"
#include "vmm/boot/bzimage_loader.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;

namespace {
constexpr uint64_t kMem = 64ull << 20;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  std::span<const uint8_t> image(data, size);
  (void)is_bzimage(image);
  auto k = load_bzimage_kernel(mem, image);
  if (!k) return 0;

  FUZZ_CHECK(k->kind == KernelKind::BzImage);
  FUZZ_CHECK(k->load_start >= kKernelMinGpa && k->load_start < k->load_end);
  FUZZ_CHECK(k->load_end <= kIdentityMapEnd && k->load_end <= kMem);
  FUZZ_CHECK(k->entry_gpa == k->load_start + 0x200 && k->entry_gpa < k->load_end);

  SetupHeader hdr;
  std::memcpy(&hdr, data + kSetupHeaderOffset, std::min(sizeof hdr, size - kSetupHeaderOffset));
  const uint32_t align = hdr.kernel_alignment;
  if (hdr.relocatable_kernel && std::has_single_bit(align)) FUZZ_CHECK(k->load_start % align == 0);
  const size_t pm_offset = ((hdr.setup_sects == 0 ? 4 : hdr.setup_sects) + 1) * size_t{512};
  FUZZ_CHECK(pm_offset < size);
  FUZZ_CHECK(k->load_end - k->load_start >= size - pm_offset);
  auto host = mem.host_ptr(k->load_start, size - pm_offset);
  FUZZ_CHECK(host.has_value());
  FUZZ_CHECK(std::memcmp(*host, data + pm_offset, size - pm_offset) == 0);

  FUZZ_CHECK(!k->setup_header.empty() && k->setup_header.size() <= kSetupHeaderMaxBytes);
  FUZZ_CHECK(std::memcmp(k->setup_header.data(), data + kSetupHeaderOffset, k->setup_header.size()) == 0);
  FUZZ_CHECK(k->initrd_addr_max == hdr.initrd_addr_max);

  // As boot_linux() goes on: an initrd, then the zero page.
  static const uint8_t kInitrd[] = "070701" "00000000000000000000000000000000";
  BootConfig cfg;
  cfg.cmdline = "console=ttyS0 reboot=k panic=-1";
  cfg.setup_header = k->setup_header;
  cfg.ram = mem.regions();
  auto placed = load_initrd(mem, kInitrd, k->load_end, k->initrd_addr_max);
  if (placed) {
    FUZZ_CHECK(placed->gpa >= k->load_end && placed->gpa + placed->size <= uint64_t{k->initrd_addr_max} + 1);
    cfg.initrd_gpa = placed->gpa;
    cfg.initrd_size = placed->size;
  }
  if (!write_boot_params(mem, cfg)) return 0;
  auto bp = mem.read_obj<BootParams>(kBootParamsGpa);
  FUZZ_CHECK(bp.has_value());
  FUZZ_CHECK(bp->hdr.boot_flag == kBootFlagMagic && bp->hdr.header == kHdrSMagic);
  FUZZ_CHECK(bp->hdr.cmd_line_ptr == kCmdlineGpa && bp->hdr.cmdline_size == cfg.cmdline.size() + 1);
  FUZZ_CHECK(bp->hdr.ramdisk_image == (placed ? placed->gpa : 0));
  FUZZ_CHECK(bp->e820_entries > 0 && bp->e820_entries <= kE820MaxEntries);
  return 0;
}
