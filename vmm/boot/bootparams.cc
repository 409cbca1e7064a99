#include "vmm/boot/bootparams.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

// Half-open [start, end); `end` saturates at UINT64_MAX instead of wrapping.
struct Span {
  uint64_t start;
  uint64_t end;
};

uint64_t saturating_end(uint64_t gpa, uint64_t size) {
  return size > std::numeric_limits<uint64_t>::max() - gpa ? std::numeric_limits<uint64_t>::max() : gpa + size;
}

// Sorts spans and merges overlapping or touching ones.
std::vector<Span> merged(std::vector<Span> v) {
  std::sort(v.begin(), v.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
  std::vector<Span> out;
  for (const Span& s : v) {
    if (!out.empty() && s.start <= out.back().end)
      out.back().end = std::max(out.back().end, s.end);
    else
      out.push_back(s);
  }
  return out;
}

// Appends the parts of `ram` that no span of `holes` (sorted, merged) covers.
void append_uncovered(std::vector<E820Entry>& out, Span ram, const std::vector<Span>& holes) {
  uint64_t cur = ram.start;
  for (const Span& h : holes) {
    if (h.end <= cur) continue;
    if (h.start >= ram.end) break;
    if (h.start > cur) out.push_back({cur, h.start - cur, kE820Ram});
    cur = h.end;
    if (cur >= ram.end) return;
  }
  if (cur < ram.end) out.push_back({cur, ram.end - cur, kE820Ram});
}

Result<> check_cmdline(const std::string& cmdline) {
  if (cmdline.size() + 1 > kCmdlineMaxSize)
    return err("boot params: command line has {} bytes, the limit is {}", cmdline.size(), kCmdlineMaxSize - 1);
  if (cmdline.find('\0') != std::string::npos) return err("boot params: command line contains a NUL byte");
  return {};
}

Result<> check_ranges(const BootConfig& cfg, const GuestMemory& mem) {
  if (cfg.ram.empty()) return err("boot params: no RAM regions given");
  for (const GuestRange& r : cfg.reserved) {
    if (r.size > std::numeric_limits<uint64_t>::max() - r.gpa)
      return err("boot params: reserved range {:#x}+{:#x} wraps around the address space", r.gpa, r.size);
  }
  if (cfg.initrd_size != 0 && !mem.contains(cfg.initrd_gpa, cfg.initrd_size))
    return err("boot params: initrd {:#x}+{:#x} is outside guest RAM", cfg.initrd_gpa, cfg.initrd_size);
  return {};
}

// Starts from the kernel's own header bytes (64-bit boot protocol: copy the
// setup header from the image into a zeroed boot_params).
Result<> copy_setup_header(BootParams& bp, std::span<const uint8_t> bytes) {
  if (bytes.size() > kSetupHeaderMaxBytes)
    return err("boot params: setup header has {} bytes, at most {} fit in the zero page", bytes.size(),
               kSetupHeaderMaxBytes);
  if (!bytes.empty())  // an empty span may have a null data(), which memcpy must not get
    std::memcpy(reinterpret_cast<uint8_t*>(&bp) + kSetupHeaderOffset, bytes.data(), bytes.size());
  return {};
}

Result<> fill_header(SetupHeader& hdr, const BootConfig& cfg) {
  // A kernel that states its limit (protocol 2.06+) gets it enforced.
  const uint32_t kernel_max = hdr.cmdline_size;  // a copy: fmt cannot bind packed fields
  if (kernel_max != 0 && cfg.cmdline.size() > kernel_max)
    return err("boot params: command line has {} bytes, the kernel accepts at most {}", cfg.cmdline.size(),
               kernel_max);
  hdr.type_of_loader = kLoaderTypeUndefined;
  hdr.boot_flag = kBootFlagMagic;
  hdr.header = kHdrSMagic;
  hdr.loadflags |= kLoadedHigh | kCanUseHeap;
  hdr.heap_end_ptr = 0xe000 - 0x200;  // boot.rst's value; only the 16-bit setup code uses it
  hdr.cmd_line_ptr = static_cast<uint32_t>(kCmdlineGpa);
  hdr.cmdline_size = static_cast<uint32_t>(cfg.cmdline.size() + 1);
  return {};
}

// 64-bit initrd address and size: low halves in the header, high in ext_*.
void set_initrd(BootParams& bp, const BootConfig& cfg) {
  uint64_t gpa = cfg.initrd_size != 0 ? cfg.initrd_gpa : 0;
  bp.hdr.ramdisk_image = static_cast<uint32_t>(gpa);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(cfg.initrd_size);
  bp.ext_ramdisk_image = static_cast<uint32_t>(gpa >> 32);
  bp.ext_ramdisk_size = static_cast<uint32_t>(cfg.initrd_size >> 32);
}

Result<> fill_e820(BootParams& bp, const BootConfig& cfg) {
  std::vector<E820Entry> map = e820_map(cfg.ram, cfg.reserved);
  if (map.size() > kE820MaxEntries)
    return err("boot params: e820 map needs {} entries, the zero page holds {}", map.size(), kE820MaxEntries);
  std::copy(map.begin(), map.end(), bp.e820_table);
  bp.e820_entries = static_cast<uint8_t>(map.size());
  return {};
}

}  // namespace

std::vector<E820Entry> e820_map(std::span<const MemoryRegion> ram, std::span<const GuestRange> reserved) {
  std::vector<Span> holes{{kLowReservedStart, kLowReservedEnd}};
  for (const GuestRange& r : reserved)
    if (r.size != 0) holes.push_back({r.gpa, saturating_end(r.gpa, r.size)});
  holes = merged(std::move(holes));

  std::vector<Span> ram_spans;
  for (const MemoryRegion& r : ram)
    if (r.size != 0) ram_spans.push_back({r.gpa, saturating_end(r.gpa, r.size)});

  std::vector<E820Entry> out;
  for (const Span& r : merged(std::move(ram_spans))) append_uncovered(out, r, holes);
  for (const Span& h : holes) out.push_back({h.start, h.end - h.start, kE820Reserved});
  std::sort(out.begin(), out.end(), [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  return out;
}

Result<> write_boot_params(GuestMemory& mem, const BootConfig& cfg) {
  VIC_TRY(check_cmdline(cfg.cmdline));
  VIC_TRY(check_ranges(cfg, mem));

  BootParams bp{};
  VIC_TRY(copy_setup_header(bp, cfg.setup_header));
  VIC_TRY(fill_header(bp.hdr, cfg));
  set_initrd(bp, cfg);
  VIC_TRY(fill_e820(bp, cfg));

  std::vector<uint8_t> cmdline(cfg.cmdline.begin(), cfg.cmdline.end());
  cmdline.push_back(0);
  auto r = mem.write(kCmdlineGpa, cmdline);
  if (!r) return with_context(r.error(), "boot params: writing the command line");
  r = mem.write_obj(kBootParamsGpa, bp);
  if (!r) return with_context(r.error(), "boot params: writing the zero page");
  return {};
}

}  // namespace vicvmm::boot
