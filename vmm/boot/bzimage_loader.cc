#include "vmm/boot/bzimage_loader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "vmm/boot/bootparams.h"
#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

constexpr size_t kSectorSize = 512;
constexpr uint64_t kEntry64Offset = 0x200;  // startup_64 sits 0x200 into the protected-mode code
constexpr uint16_t kMinProtocol = 0x0206;   // cmdline_size and a sane header
constexpr uint16_t kProtocolPrefAddress = 0x020a;  // pref_address, init_size
constexpr size_t kHeaderEndOffset = 0x201;  // byte giving the header length past 0x202

template <class T>
T read_at(std::span<const uint8_t> image, size_t off) {
  T v;
  std::memcpy(&v, image.data() + off, sizeof(T));
  return v;
}

// The setup header as the image has it; bytes past the file's end read as 0.
SetupHeader header_of(std::span<const uint8_t> image) {
  SetupHeader hdr{};
  size_t n = std::min(sizeof(hdr), image.size() - kSetupHeaderOffset);
  std::memcpy(&hdr, image.data() + kSetupHeaderOffset, n);
  return hdr;
}

Result<SetupHeader> read_header(std::span<const uint8_t> image) {
  constexpr size_t kMinBytes = offsetof(SetupHeader, version) + sizeof(uint16_t) + kSetupHeaderOffset;
  if (image.size() < kMinBytes)
    return err("bzImage: setup header truncated ({} of at least {} bytes)", image.size(), kMinBytes);
  SetupHeader hdr = header_of(image);
  const uint16_t boot_flag = hdr.boot_flag, version = hdr.version;  // copies: fmt cannot bind packed fields
  if (boot_flag != kBootFlagMagic)
    return err("bzImage: bad boot sector magic {:#06x} at 0x1fe (expected 0xaa55)", boot_flag);
  if (hdr.header != kHdrSMagic) return err("bzImage: missing \"HdrS\" signature at 0x202");
  if (version < kMinProtocol)
    return err("bzImage: boot protocol {}.{:02} is too old (need 2.06 or later)", version >> 8, version & 0xff);
  if (!(hdr.xloadflags & kXlfKernel64))
    return err("bzImage: kernel has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags)");
  return hdr;
}

// Header bytes 0x1f1 .. 0x202 + image[0x201], clipped to the file and the
// zero page's header area.
std::vector<uint8_t> header_bytes(std::span<const uint8_t> image) {
  size_t end = 0x202 + size_t{image[kHeaderEndOffset]};
  end = std::min({end, image.size(), kSetupHeaderOffset + kSetupHeaderMaxBytes});
  return {image.begin() + kSetupHeaderOffset, image.begin() + static_cast<ptrdiff_t>(end)};
}

uint64_t load_address(const SetupHeader& hdr) {
  uint64_t addr = kKernelDefaultGpa;
  if (hdr.version >= kProtocolPrefAddress && hdr.pref_address != 0) addr = hdr.pref_address;
  uint64_t align = hdr.kernel_alignment;
  // Only addresses check_placement can accept are aligned, so this cannot wrap.
  if (hdr.relocatable_kernel && std::has_single_bit(align) && addr < kIdentityMapEnd && addr % align != 0)
    addr = (addr / align + 1) * align;
  return addr;
}

Result<> check_placement(const GuestMemory& mem, uint64_t load, uint64_t footprint) {
  if (load < kKernelMinGpa)
    return err("bzImage: load address {:#x} overlaps the boot area below {:#x}", load, kKernelMinGpa);
  if (footprint > kIdentityMapEnd || load > kIdentityMapEnd - footprint)
    return err("bzImage: kernel at {:#x}+{:#x} ends above 4 GiB, outside the boot identity map", load, footprint);
  if (!mem.contains(load, footprint))
    return err("bzImage: kernel at {:#x}+{:#x} (image or init_size) does not fit in guest RAM", load, footprint);
  return {};
}

}  // namespace

bool is_bzimage(std::span<const uint8_t> image) {
  bool boot_flag = image.size() >= 0x200 && read_at<uint16_t>(image, 0x1fe) == kBootFlagMagic;
  bool hdrs = image.size() >= 0x206 && read_at<uint32_t>(image, 0x202) == kHdrSMagic;
  return boot_flag || hdrs;
}

Result<LoadedKernel> load_bzimage_kernel(GuestMemory& mem, std::span<const uint8_t> image) {
  VIC_ASSIGN(SetupHeader hdr, read_header(image));
  size_t setup_sects = hdr.setup_sects == 0 ? 4 : hdr.setup_sects;  // boot.rst: 0 means 4
  size_t pm_offset = (setup_sects + 1) * kSectorSize;
  if (pm_offset >= image.size())
    return err("bzImage: setup_sects {} puts the kernel at offset {:#x}, past the end of the {}-byte file",
               setup_sects, pm_offset, image.size());
  std::span<const uint8_t> pm = image.subspan(pm_offset);
  if (pm.size() <= kEntry64Offset)
    return err("bzImage: protected-mode code has {} bytes, too short for the 64-bit entry at +0x200", pm.size());

  uint64_t load = load_address(hdr);
  uint64_t init_size = hdr.version >= kProtocolPrefAddress ? hdr.init_size : 0;
  uint64_t footprint = std::max<uint64_t>(pm.size(), init_size);
  VIC_TRY(check_placement(mem, load, footprint));
  VIC_TRY(mem.write(load, pm));

  LoadedKernel k;
  k.kind = KernelKind::BzImage;
  k.entry_gpa = load + kEntry64Offset;
  k.load_start = load;
  k.load_end = load + footprint;
  k.setup_header = header_bytes(image);
  k.initrd_addr_max = hdr.initrd_addr_max;
  return k;
}

}  // namespace vicvmm::boot
