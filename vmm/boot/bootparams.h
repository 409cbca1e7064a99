// The Linux x86 zero page (struct boot_params) and its builder.
//
// The structs mirror arch/x86/include/uapi/asm/bootparam.h byte for byte
// (checked by the static_asserts below) without including it, so the layout
// is pinned here and not by whatever kernel headers the host has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"

namespace vicvmm::boot {

// setup_header.loadflags
inline constexpr uint8_t kLoadedHigh = 1u << 0;
inline constexpr uint8_t kCanUseHeap = 1u << 7;
// setup_header.xloadflags
inline constexpr uint16_t kXlfKernel64 = 1u << 0;
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 1u << 1;

inline constexpr uint16_t kBootFlagMagic = 0xaa55;
inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
inline constexpr uint8_t kLoaderTypeUndefined = 0xff;

// e820 entry types
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
inline constexpr size_t kE820MaxEntries = 128;  // slots in the zero page

struct [[gnu::packed]] E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

struct [[gnu::packed]] SetupHeader {
  uint8_t setup_sects;
  uint16_t root_flags;
  uint32_t syssize;
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;
  uint16_t jump;
  uint32_t header;
  uint16_t version;
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;
  uint8_t loadflags;
  uint16_t setup_move_size;
  uint32_t code32_start;
  uint32_t ramdisk_image;
  uint32_t ramdisk_size;
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;
  uint32_t initrd_addr_max;
  uint32_t kernel_alignment;
  uint8_t relocatable_kernel;
  uint8_t min_alignment;
  uint16_t xloadflags;
  uint32_t cmdline_size;
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;
  uint32_t init_size;
  uint32_t handover_offset;
  uint32_t kernel_info_offset;
};

// Offset of the setup header in both the zero page and a bzImage file.
inline constexpr size_t kSetupHeaderOffset = 0x1f1;
// The zero page reserves 0x1f1..0x290 for the header, room for later versions.
inline constexpr size_t kSetupHeaderMaxBytes = 0x290 - kSetupHeaderOffset;

// The "zero page". Fields vicvmm never sets are kept as opaque byte arrays.
struct [[gnu::packed]] BootParams {
  uint8_t screen_info[0x40];
  uint8_t apm_bios_info[0x14];
  uint8_t pad2[4];
  uint64_t tboot_addr;
  uint8_t ist_info[0x10];
  uint64_t acpi_rsdp_addr;
  uint8_t pad3[8];
  uint8_t hd0_info[16];
  uint8_t hd1_info[16];
  uint8_t sys_desc_table[16];
  uint8_t olpc_ofw_header[16];
  uint32_t ext_ramdisk_image;
  uint32_t ext_ramdisk_size;
  uint32_t ext_cmd_line_ptr;
  uint8_t pad4[112];
  uint32_t cc_blob_address;
  uint8_t edid_info[128];
  uint8_t efi_info[32];
  uint32_t alt_mem_k;
  uint32_t scratch;
  uint8_t e820_entries;
  uint8_t eddbuf_entries;
  uint8_t edd_mbr_sig_buf_entries;
  uint8_t kbd_status;
  uint8_t secure_boot;
  uint8_t pad5[2];
  uint8_t sentinel;
  uint8_t pad6[1];
  SetupHeader hdr;
  uint8_t pad7[kSetupHeaderMaxBytes - sizeof(SetupHeader)];
  uint32_t edd_mbr_sig_buffer[16];
  E820Entry e820_table[kE820MaxEntries];
  uint8_t pad8[48];
  uint8_t eddbuf[6 * 82];
  uint8_t pad9[276];
};

static_assert(sizeof(E820Entry) == 20);
static_assert(sizeof(SetupHeader) == 0x7b);
static_assert(offsetof(SetupHeader, boot_flag) == 0x1fe - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, header) == 0x202 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, version) == 0x206 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, type_of_loader) == 0x210 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, ramdisk_image) == 0x218 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, heap_end_ptr) == 0x224 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, cmd_line_ptr) == 0x228 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, initrd_addr_max) == 0x22c - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, relocatable_kernel) == 0x234 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, xloadflags) == 0x236 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, cmdline_size) == 0x238 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, pref_address) == 0x258 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, init_size) == 0x260 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, kernel_info_offset) == 0x268 - kSetupHeaderOffset);
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, tboot_addr) == 0x058);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_ramdisk_size) == 0x0c4);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, cc_blob_address) == 0x13c);
static_assert(offsetof(BootParams, edid_info) == 0x140);
static_assert(offsetof(BootParams, efi_info) == 0x1c0);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, sentinel) == 0x1ef);
static_assert(offsetof(BootParams, hdr) == kSetupHeaderOffset);
static_assert(offsetof(BootParams, edd_mbr_sig_buffer) == 0x290);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);
static_assert(offsetof(BootParams, pad8) == 0xcd0);
static_assert(offsetof(BootParams, eddbuf) == 0xd00);
static_assert(offsetof(BootParams, pad9) == 0xeec);

// A guest-physical range [gpa, gpa + size).
struct GuestRange {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

struct BootConfig {
  std::string cmdline;              // without the NUL; at most kCmdlineMaxSize - 1 bytes
  uint64_t initrd_gpa = 0;          // initrd_size == 0: no initrd
  uint64_t initrd_size = 0;
  std::vector<uint8_t> setup_header;  // a bzImage's header bytes (LoadedKernel::setup_header); empty for ELF
  std::vector<MemoryRegion> ram;      // guest RAM, normally GuestMemory::regions()
  std::vector<GuestRange> reserved;   // extra e820-reserved ranges (carved out of RAM)
};

// The e820 table for `ram` minus the reserved ranges: the fixed low range
// (mailbox, MP table, legacy hole: kLowReservedStart..kLowReservedEnd) plus
// `reserved`. Sorted by address, non-overlapping; reserved ranges appear as
// kE820Reserved entries (overlapping ones merged); zero-sized ranges dropped.
std::vector<E820Entry> e820_map(std::span<const MemoryRegion> ram, std::span<const GuestRange> reserved);

// Fills the zero page at kBootParamsGpa and writes the command line at
// kCmdlineGpa.
Result<> write_boot_params(GuestMemory& mem, const BootConfig& cfg);

}  // namespace vicvmm::boot
