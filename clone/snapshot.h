// Template snapshots on disk: a paused template's state and guest RAM, saved
// so that clones can be forked from it by a later vicvmm process.
//
// A snapshot is a DIRECTORY holding two files. All integers are little-endian;
// "hash" is XXH3_64bits (xxHash 0.8, seed 0).
//
// state.bin = header (120 bytes) followed by the payload.
//
//   offset size  field
//        0    8  magic "VICVMMSN"
//        8    4  format version (u32), currently 2 (1 had no devices section)
//       12    4  header size (u32), 120 in version 1
//       16    4  host kind (u32): 0 = hardware-kvm, 1 = nested-pvm
//       20    4  struct count (u32), 14 in version 1
//       24   56  14 x u32: sizeof() of the KVM structs this file was written
//                with, in this order: kvm_regs, kvm_sregs, kvm_fpu,
//                kvm_abi::Xsave, kvm_xcrs, kvm_lapic_state, kvm_mp_state,
//                kvm_vcpu_events, kvm_debugregs, kvm_msr_entry,
//                kvm_cpuid_entry2, kvm_irqchip, kvm_pit_state2, kvm_clock_data.
//                A reader whose sizes differ refuses the file.
//       80    8  mem_size (u64): bytes of guest RAM == size of memory.bin
//       88    8  payload size (u64): bytes following the header
//       96    8  payload hash: hash of the payload bytes
//      104    8  memory hash: see memory.bin below
//      112    8  header hash: hash of header bytes [0, 112)
//
//   The payload is a sequence of sections, each: tag (u32), length (u32),
//   then `length` bytes. Every tag below appears exactly once (writers emit
//   them in tag order; readers accept any order and reject unknown tags):
//
//      1 regs, 2 sregs, 3 fpu, 4 xsave, 5 xcrs, 6 lapic, 7 mp_state,
//      8 vcpu_events, 9 debugregs, 10 pic_master, 11 pic_slave, 12 ioapic,
//     13 pit, 14 clock:
//          the KVM struct's bytes as the x86-64 KVM ABI lays them out (which
//          is little-endian); length == that struct's size in the header.
//     15 msrs: count (u32, <= 4096), reserved u32 = 0, then count entries of
//          index (u32), reserved (u32), data (u64); length == 8 + 16 * count.
//     16 cpuid: count (u32, <= 512), then count entries of function, index,
//          flags, eax, ebx, ecx, edx (7 x u32; the struct's padding is not
//          stored and reads back as zero); length == 4 + 28 * count.
//     17 serial: 8 bytes: ier, lcr, mcr, scr, dll, dlm, fifo_enabled,
//          thr_empty_pending.
//     18 devices: count (u32, <= 16), then per virtio slot in order:
//          device id (u32: 1 net, 2 blk, 3 console, 4 rng), flags (u32: bit 0 read-only),
//          path length (u32, <= 4096) and path bytes (the disk image; empty
//          for rng), the image's dev, inode, size and mtime in ns (4 x u64),
//          transport registers: status, device_features_sel,
//          driver_features_sel, queue_sel (4 x u32), driver_features
//          (u64), interrupt_status, config_generation (2 x u32), then the
//          queue count (u32, <= 16) and per queue: size, ready, last_avail,
//          next_used, signalled_used, event_idx, indirect, reserved
//          (8 x u16), desc, avail, used (3 x u64 guest-physical).
//
// memory.bin = the guest RAM image, exactly mem_size bytes. Pages are 4 KiB
//   (the last may be shorter if mem_size is not a multiple); all-zero pages
//   are left as holes, so the file is sparse.
//
//   memory hash = hash of the concatenation, over every page that is NOT
//   all-zero in increasing page order, of (page index as u64 ‖ page bytes).
//   Zero pages contribute nothing whether stored as a hole or as data, so the
//   hash can be computed from an in-memory image or from the file's data
//   extents (SEEK_DATA / SEEK_HOLE) alike.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "clone/template_state.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

// Writes `dir` atomically: both files go into a sibling temp dir
// (dir + ".tmp-XXXXXX", mode 0700), are fsync'ed, and the temp dir is renamed
// onto `dir`. Fails if `dir` exists, unless `replace`: then an existing
// snapshot directory (one holding nothing but state.bin / memory.bin) is
// swapped out atomically and removed; anything else is refused. On error
// the temp dir is removed and `dir` is untouched. (If removing the swapped-out
// old snapshot fails, the new snapshot is in place and the error says so.)
// `memory` must be exactly state.mem_size bytes.
Result<> write_snapshot(const std::string& dir, const TemplateState& state,
                        std::span<const uint8_t> memory, bool replace = false);

struct LoadedSnapshot {
  TemplateState state;
  UniqueFd memory_fd;  // memory.bin read-only, or its sealed copy; for MAP_PRIVATE
};

// How a loaded snapshot's memory is held.
enum class SnapshotMemory {
  // memory.bin itself: shared through the page cache by every process
  // that maps it, but a clone dies of SIGBUS if another process truncates
  // the file under it. For vicvmm's own templates, which it never changes
  // in place (a new template is written aside and renamed over).
  MapFile,
  // A copy in a sealed memfd (no write, shrink or grow): immune to what
  // happens to the file afterwards, verified after the copy. For snapshot
  // directories from elsewhere (fork --from); costs the copy's time and
  // one private copy of the written pages per process.
  SealedCopy,
};

// Reads and validates `dir`: magic, version, struct sizes, header and payload
// hashes, every section, host kind == expected_host, memory.bin's size ==
// mem_size and (when verify_memory) its hash. Opens everything read-only.
Result<LoadedSnapshot> read_snapshot(const std::string& dir, HostKind expected_host,
                                     bool verify_memory = true, SnapshotMemory how = SnapshotMemory::MapFile);

// The format's building blocks, exposed for tests and tools.
namespace snapshot_detail {

inline constexpr char kMagic[8] = {'V', 'I', 'C', 'V', 'M', 'M', 'S', 'N'};
inline constexpr uint32_t kFormatVersion = 2;  // 2: + devices
inline constexpr size_t kHeaderSize = 120;
inline constexpr size_t kStructCount = 14;
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint32_t kMaxMsrs = 4096;
inline constexpr uint32_t kMaxCpuidEntries = 512;
inline constexpr uint32_t kMaxDevices = 16;      // virtio::kMaxSlots
inline constexpr uint32_t kMaxDeviceQueues = 16;  // virtio-console with 5 ports has 12
inline constexpr uint32_t kMaxDevicePath = 4096;
inline constexpr uint64_t kMaxPayloadSize = 1 << 20;  // a valid payload is < 100 KiB

inline constexpr const char* kStateFile = "state.bin";
inline constexpr const char* kMemoryFile = "memory.bin";

// The header's fields, decoded (not its byte layout).
struct Header {
  std::array<char, 8> magic{};
  uint32_t version = 0;
  uint32_t header_size = 0;
  uint32_t host_kind = 0;
  uint32_t struct_count = 0;
  std::array<uint32_t, kStructCount> struct_sizes{};
  uint64_t mem_size = 0;
  uint64_t payload_size = 0;
  uint64_t payload_hash = 0;
  uint64_t memory_hash = 0;
  uint64_t header_hash = 0;
};

// The struct sizes this build writes and accepts, and their names.
const std::array<uint32_t, kStructCount>& struct_sizes();
const std::array<const char*, kStructCount>& struct_names();

uint32_t encode_host_kind(HostKind k);

// A header for `state` as this build writes it (hashes of the given values).
Header make_header(const TemplateState& state, uint64_t payload_size, uint64_t payload_hash,
                   uint64_t memory_hash);
// Byte layout; encode_header computes header_hash itself (h.header_hash is ignored).
std::array<uint8_t, kHeaderSize> encode_header(const Header& h);
// Reads the fields without validating anything; `bytes` must hold kHeaderSize bytes.
Header decode_header(std::span<const uint8_t> bytes);

uint64_t header_checksum(std::span<const uint8_t> header_bytes);  // over [0, 112)
uint64_t payload_checksum(std::span<const uint8_t> payload);
uint64_t memory_checksum(std::span<const uint8_t> image);
// The same hash over a file of `size` bytes, read through its data extents;
// `what` names the file in errors (e.g. "snapshot /x/memory.bin").
Result<uint64_t> memory_checksum_fd(int fd, uint64_t size, const std::string& what);

// The payload sections. encode fails on counts over the limits.
Result<std::vector<uint8_t>> encode_payload(const TemplateState& s);
// Fills every payload-held field of `s` (not host / mem_size). Errors name the
// section and the cause, without a file prefix.
Result<> decode_payload(std::span<const uint8_t> payload, TemplateState& s);

}  // namespace snapshot_detail
}  // namespace vicvmm
