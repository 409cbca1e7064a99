// Template snapshots on disk; the format is described in snapshot.h.
#include "clone/snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include "vmm/memory/guest_memory.h"

namespace vicvmm {

// KVM structs are stored as their x86-64 (little-endian) byte image.
static_assert(std::endian::native == std::endian::little);

namespace snapshot_detail {
namespace {

// ---- section tags ----------------------------------------------------------

enum Tag : uint32_t {
  kRegs = 1, kSregs, kFpu, kXsave, kXcrs, kLapic, kMpState, kVcpuEvents, kDebugregs,
  kPicMaster, kPicSlave, kIoapic, kPit, kClock,
  kMsrs, kCpuid, kSerial, kDevices,
};
constexpr uint32_t kLastTag = kDevices;

const char* tag_name(uint32_t tag) {
  static constexpr const char* kNames[] = {
      "?", "regs", "sregs", "fpu", "xsave", "xcrs", "lapic", "mp_state", "vcpu_events",
      "debugregs", "pic_master", "pic_slave", "ioapic", "pit", "clock", "msrs", "cpuid", "serial", "devices",
  };
  static_assert(std::size(kNames) == kLastTag + 1);
  return tag <= kLastTag ? kNames[tag] : "?";
}

// Calls f(tag, pointer to the field) for every section stored as raw KVM bytes.
// S is TemplateState or const TemplateState.
template <class S, class F>
void for_each_raw_section(S& s, F&& f) {
  f(kRegs, &s.vcpu.regs);
  f(kSregs, &s.vcpu.sregs);
  f(kFpu, &s.vcpu.fpu);
  f(kXsave, &s.vcpu.xsave);
  f(kXcrs, &s.vcpu.xcrs);
  f(kLapic, &s.vcpu.lapic);
  f(kMpState, &s.vcpu.mp_state);
  f(kVcpuEvents, &s.vcpu.events);
  f(kDebugregs, &s.vcpu.debugregs);
  f(kPicMaster, &s.vm.pic_master);
  f(kPicSlave, &s.vm.pic_slave);
  f(kIoapic, &s.vm.ioapic);
  f(kPit, &s.vm.pit);
  f(kClock, &s.vm.clock);
}

constexpr size_t kMsrEntryBytes = 16;    // index, reserved, data
constexpr size_t kCpuidEntryBytes = 28;  // 7 x u32
constexpr size_t kSerialBytes = 8;

// ---- little-endian encoding ------------------------------------------------

void put_le(uint8_t* p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t get_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u32(uint32_t v) { append_le(v, 4); }
  void u64(uint64_t v) { append_le(v, 8); }
  void bytes(const void* p, size_t n) {
    auto b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  size_t size() const { return buf_.size(); }
  void patch_u32(size_t offset, uint32_t v) { put_le(buf_.data() + offset, v, 4); }
  std::vector<uint8_t> take() { return std::move(buf_); }

 private:
  void append_le(uint64_t v, size_t n) {
    size_t at = buf_.size();
    buf_.resize(at + n);
    put_le(buf_.data() + at, v, n);
  }
  std::vector<uint8_t> buf_;
};

// Reads from a span; callers check remaining() before reading.
class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> b) : b_(b) {}
  size_t remaining() const { return b_.size() - pos_; }
  size_t offset() const { return pos_; }
  uint8_t u8() { return b_[pos_++]; }
  uint32_t u32() { return static_cast<uint32_t>(next_le(4)); }
  uint64_t u64() { return next_le(8); }
  std::span<const uint8_t> take(size_t n) {
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  uint64_t next_le(size_t n) {
    uint64_t v = get_le(b_.data() + pos_, n);
    pos_ += n;
    return v;
  }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

// ---- hashing ----------------------------------------------------------------

class Xxh3Stream {
 public:
  Xxh3Stream() { XXH3_64bits_reset(&st_); }
  void update(const void* p, size_t n) { XXH3_64bits_update(&st_, p, n); }
  uint64_t digest() const { return XXH3_64bits_digest(&st_); }

 private:
  XXH3_state_t st_;
};

bool is_zero_page(std::span<const uint8_t> page) {
  static const uint8_t kZeros[kPageSize] = {};
  return std::memcmp(page.data(), kZeros, page.size()) == 0;
}

// Adds one page (index `index`, bytes `page`) to the memory hash unless it is zero.
void hash_page(Xxh3Stream& h, uint64_t index, std::span<const uint8_t> page) {
  if (is_zero_page(page)) return;
  uint8_t le[8];
  put_le(le, index, 8);
  h.update(le, sizeof le);
  h.update(page.data(), page.size());
}

uint64_t page_count(uint64_t size) { return (size + kPageSize - 1) / kPageSize; }

// Page `index` of an image of `size` bytes (the last one may be short).
std::span<const uint8_t> page_of(std::span<const uint8_t> image, uint64_t index) {
  uint64_t off = index * kPageSize;
  return image.subspan(off, std::min<uint64_t>(kPageSize, image.size() - off));
}

// ---- file I/O -----------------------------------------------------------------

Result<> pread_full(int fd, uint8_t* buf, size_t len, uint64_t off, const std::string& what) {
  while (len > 0) {
    ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_err("{}: read at offset {}", what, off);
    if (n == 0) return err("{}: unexpected end of file at offset {}", what, off);
    buf += n, off += n, len -= n;
  }
  return {};
}

Result<> pwrite_full(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& what) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, buf, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_err("{}: write at offset {}", what, off);
    buf += n, off += n, len -= n;
  }
  return {};
}

// Hashes pages [first, end) of an fd of `size` bytes, reading in 1 MiB chunks.
Result<> hash_file_pages(int fd, uint64_t size, uint64_t first, uint64_t end, Xxh3Stream& h,
                         std::vector<uint8_t>& buf, const std::string& what) {
  const uint64_t chunk_pages = buf.size() / kPageSize;
  for (uint64_t p = first; p < end;) {
    uint64_t n = std::min(chunk_pages, end - p);
    uint64_t off = p * kPageSize;
    uint64_t len = std::min(n * kPageSize, size - off);
    VIC_TRY(pread_full(fd, buf.data(), len, off, what));
    auto chunk = std::span<const uint8_t>(buf.data(), len);
    for (uint64_t i = 0; i < n; ++i) hash_page(h, p + i, page_of(chunk, i));
    p += n;
  }
  return {};
}

}  // namespace

// ---- header -----------------------------------------------------------------

const std::array<uint32_t, kStructCount>& struct_sizes() {
  static constexpr std::array<uint32_t, kStructCount> kSizes = {
      sizeof(kvm_regs),        sizeof(kvm_sregs),        sizeof(kvm_fpu),
      sizeof(kvm_abi::Xsave),  sizeof(kvm_xcrs),         sizeof(kvm_lapic_state),
      sizeof(kvm_mp_state),    sizeof(kvm_vcpu_events),  sizeof(kvm_debugregs),
      sizeof(kvm_msr_entry),   sizeof(kvm_cpuid_entry2), sizeof(kvm_irqchip),
      sizeof(kvm_pit_state2),  sizeof(kvm_clock_data),
  };
  return kSizes;
}

const std::array<const char*, kStructCount>& struct_names() {
  static constexpr std::array<const char*, kStructCount> kNames = {
      "kvm_regs",       "kvm_sregs",        "kvm_fpu",         "kvm_abi::Xsave", "kvm_xcrs",
      "kvm_lapic_state", "kvm_mp_state",    "kvm_vcpu_events", "kvm_debugregs",  "kvm_msr_entry",
      "kvm_cpuid_entry2", "kvm_irqchip",    "kvm_pit_state2",  "kvm_clock_data",
  };
  return kNames;
}

uint32_t encode_host_kind(HostKind k) { return k == HostKind::NestedPvm ? 1 : 0; }

Header make_header(const TemplateState& state, uint64_t payload_size, uint64_t payload_hash,
                   uint64_t memory_hash) {
  Header h;
  std::copy(std::begin(kMagic), std::end(kMagic), h.magic.begin());
  h.version = kFormatVersion;
  h.header_size = kHeaderSize;
  h.host_kind = encode_host_kind(state.host);
  h.struct_count = kStructCount;
  h.struct_sizes = struct_sizes();
  h.mem_size = state.mem_size;
  h.payload_size = payload_size;
  h.payload_hash = payload_hash;
  h.memory_hash = memory_hash;
  return h;
}

std::array<uint8_t, kHeaderSize> encode_header(const Header& h) {
  ByteWriter w;
  w.bytes(h.magic.data(), h.magic.size());
  w.u32(h.version);
  w.u32(h.header_size);
  w.u32(h.host_kind);
  w.u32(h.struct_count);
  for (uint32_t s : h.struct_sizes) w.u32(s);
  w.u64(h.mem_size);
  w.u64(h.payload_size);
  w.u64(h.payload_hash);
  w.u64(h.memory_hash);
  std::vector<uint8_t> v = w.take();
  v.resize(kHeaderSize);
  put_le(v.data() + kHeaderSize - 8, header_checksum(v), 8);
  std::array<uint8_t, kHeaderSize> out;
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

Header decode_header(std::span<const uint8_t> bytes) {
  ByteReader r(bytes.first(kHeaderSize));
  Header h;
  auto magic = r.take(h.magic.size());
  std::copy(magic.begin(), magic.end(), h.magic.begin());
  h.version = r.u32();
  h.header_size = r.u32();
  h.host_kind = r.u32();
  h.struct_count = r.u32();
  for (uint32_t& s : h.struct_sizes) s = r.u32();
  h.mem_size = r.u64();
  h.payload_size = r.u64();
  h.payload_hash = r.u64();
  h.memory_hash = r.u64();
  h.header_hash = r.u64();
  return h;
}

uint64_t header_checksum(std::span<const uint8_t> header_bytes) {
  return XXH3_64bits(header_bytes.data(), kHeaderSize - 8);
}

uint64_t payload_checksum(std::span<const uint8_t> payload) {
  return XXH3_64bits(payload.data(), payload.size());
}

// ---- memory hash --------------------------------------------------------------

uint64_t memory_checksum(std::span<const uint8_t> image) {
  Xxh3Stream h;
  for (uint64_t i = 0, n = page_count(image.size()); i < n; ++i) hash_page(h, i, page_of(image, i));
  return h.digest();
}

Result<uint64_t> memory_checksum_fd(int fd, uint64_t size, const std::string& what) {
  Xxh3Stream h;
  std::vector<uint8_t> buf(256 * kPageSize);
  uint64_t next_page = 0;  // pages below this are hashed (or were holes)
  while (next_page * kPageSize < size) {
    off_t data = ::lseek(fd, static_cast<off_t>(next_page * kPageSize), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only holes from here on
    if (data < 0) return sys_err("{}: lseek(SEEK_DATA)", what);
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return sys_err("{}: lseek(SEEK_HOLE)", what);
    uint64_t data_end = std::min<uint64_t>(hole, size);
    if (static_cast<uint64_t>(data) >= data_end) break;
    // Extents need not be page-aligned: hash every page they touch, once.
    uint64_t first = std::max<uint64_t>(data / kPageSize, next_page);
    uint64_t end = page_count(data_end);
    VIC_TRY(hash_file_pages(fd, size, first, end, h, buf, what));
    next_page = end;
  }
  return h.digest();
}

// ---- payload ------------------------------------------------------------------

namespace {

void begin_section(ByteWriter& w, uint32_t tag, size_t& length_at) {
  w.u32(tag);
  length_at = w.size();
  w.u32(0);
}

void end_section(ByteWriter& w, size_t length_at) {
  w.patch_u32(length_at, static_cast<uint32_t>(w.size() - length_at - 4));
}

void encode_msrs(ByteWriter& w, const std::vector<kvm_msr_entry>& msrs) {
  w.u32(static_cast<uint32_t>(msrs.size()));
  w.u32(0);
  for (const kvm_msr_entry& m : msrs) {
    w.u32(m.index);
    w.u32(m.reserved);
    w.u64(m.data);
  }
}

void encode_cpuid(ByteWriter& w, const std::vector<kvm_cpuid_entry2>& cpuid) {
  w.u32(static_cast<uint32_t>(cpuid.size()));
  for (const kvm_cpuid_entry2& e : cpuid) {
    for (uint32_t v : {e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx}) w.u32(v);
  }
}

void encode_serial(ByteWriter& w, const SerialState& s) {
  for (uint8_t v : {s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm, s.fifo_enabled, s.thr_empty_pending}) {
    w.u8(v);
  }
}

void encode_devices(ByteWriter& w, const std::vector<DeviceRecord>& devices) {
  w.u32(static_cast<uint32_t>(devices.size()));
  for (const DeviceRecord& d : devices) {
    w.u32(d.spec.device_id);
    w.u32(d.spec.read_only ? 1 : 0);
    w.u32(static_cast<uint32_t>(d.spec.path.size()));
    w.bytes(d.spec.path.data(), d.spec.path.size());
    for (uint64_t v : {d.spec.identity.dev, d.spec.identity.ino, d.spec.identity.size, d.spec.identity.mtime_ns}) w.u64(v);
    const auto& r = d.transport.regs;
    for (uint32_t v : {r.status, r.device_features_sel, r.driver_features_sel, r.queue_sel}) w.u32(v);
    w.u64(r.driver_features);
    w.u32(r.interrupt_status);
    w.u32(r.config_generation);
    w.u32(static_cast<uint32_t>(d.transport.queues.size()));
    for (const auto& q : d.transport.queues) {
      for (uint16_t v : {q.size, q.ready, q.last_avail, q.next_used, q.signalled_used, q.event_idx, q.indirect, q.reserved})
        w.bytes(&v, 2);  // x86-64: little-endian already
      for (uint64_t v : {q.desc, q.avail, q.used}) w.u64(v);
    }
  }
}

// A count-prefixed section's count, checked against its limit and its length.
Result<uint32_t> section_count(std::span<const uint8_t> b, const char* name, size_t prefix,
                               size_t entry_bytes, uint32_t max) {
  if (b.size() < prefix) return err("section '{}': {} bytes, too short for its count", name, b.size());
  uint32_t count = static_cast<uint32_t>(get_le(b.data(), 4));
  if (count > max) return err("section '{}': {} entries, at most {} allowed", name, count, max);
  size_t need = prefix + count * entry_bytes;
  if (b.size() != need) {
    return err("section '{}': {} entries need {} bytes, the section has {}", name, count, need, b.size());
  }
  return count;
}

Result<> decode_msrs(std::span<const uint8_t> b, std::vector<kvm_msr_entry>& msrs) {
  VIC_ASSIGN(uint32_t count, section_count(b, "msrs", 8, kMsrEntryBytes, kMaxMsrs));
  ByteReader r(b.subspan(8));
  msrs.assign(count, kvm_msr_entry{});
  for (kvm_msr_entry& m : msrs) {
    m.index = r.u32();
    m.reserved = r.u32();
    m.data = r.u64();
  }
  return {};
}

Result<> decode_cpuid(std::span<const uint8_t> b, std::vector<kvm_cpuid_entry2>& cpuid) {
  VIC_ASSIGN(uint32_t count, section_count(b, "cpuid", 4, kCpuidEntryBytes, kMaxCpuidEntries));
  ByteReader r(b.subspan(4));
  cpuid.assign(count, kvm_cpuid_entry2{});
  for (kvm_cpuid_entry2& e : cpuid) {
    for (uint32_t* f : {&e.function, &e.index, &e.flags, &e.eax, &e.ebx, &e.ecx, &e.edx}) *f = r.u32();
  }
  return {};
}

Result<> decode_serial(std::span<const uint8_t> b, SerialState& s) {
  if (b.size() != kSerialBytes) {
    return err("section 'serial': {} bytes, expected {}", b.size(), kSerialBytes);
  }
  ByteReader r(b);
  for (uint8_t* f : {&s.ier, &s.lcr, &s.mcr, &s.scr, &s.dll, &s.dlm, &s.fifo_enabled,
                     &s.thr_empty_pending}) {
    *f = r.u8();
  }
  return {};
}

Result<> decode_devices(std::span<const uint8_t> b, std::vector<DeviceRecord>& devices) {
  ByteReader r(b);
  auto need = [&](size_t n, const char* what) -> Result<> {
    if (r.remaining() < n) return err("section 'devices': truncated at {} (offset {})", what, r.offset());
    return {};
  };
  VIC_TRY(need(4, "the count"));
  uint32_t count = r.u32();
  if (count > kMaxDevices) return err("section 'devices': {} devices, at most {} allowed", count, kMaxDevices);
  devices.assign(count, DeviceRecord{});
  for (DeviceRecord& d : devices) {
    VIC_TRY(need(12, "a device header"));
    d.spec.device_id = r.u32();
    uint32_t flags = r.u32();
    uint32_t path_len = r.u32();
    if (d.spec.device_id != virtio::kDeviceBlock && d.spec.device_id != virtio::kDeviceRng &&
        d.spec.device_id != virtio::kDeviceConsole && d.spec.device_id != virtio::kDeviceNet)
      return err("section 'devices': unknown device id {}", d.spec.device_id);
    if (flags > 1) return err("section 'devices': unknown flags {:#x}", flags);
    d.spec.read_only = flags & 1;
    if (path_len > kMaxDevicePath) return err("section 'devices': a {}-byte path, at most {}", path_len, kMaxDevicePath);
    VIC_TRY(need(path_len + 32 + 32 + 4, "a device"));
    auto path = r.take(path_len);
    d.spec.path.assign(path.begin(), path.end());
    if (d.spec.path.find('\0') != std::string::npos) return err("section 'devices': a path with a NUL byte");
    for (uint64_t* v : {&d.spec.identity.dev, &d.spec.identity.ino, &d.spec.identity.size, &d.spec.identity.mtime_ns})
      *v = r.u64();
    auto& g = d.transport.regs;
    for (uint32_t* v : {&g.status, &g.device_features_sel, &g.driver_features_sel, &g.queue_sel}) *v = r.u32();
    g.driver_features = r.u64();
    g.interrupt_status = r.u32();
    g.config_generation = r.u32();
    uint32_t queues = r.u32();
    if (queues > kMaxDeviceQueues) return err("section 'devices': {} queues, at most {}", queues, kMaxDeviceQueues);
    VIC_TRY(need(size_t{queues} * 40, "the queues"));
    d.transport.queues.assign(queues, virtio::QueueState{});
    for (auto& q : d.transport.queues) {
      for (uint16_t* v : {&q.size, &q.ready, &q.last_avail, &q.next_used, &q.signalled_used, &q.event_idx, &q.indirect,
                          &q.reserved}) {
        auto two = r.take(2);
        *v = static_cast<uint16_t>(two[0] | (two[1] << 8));
      }
      for (uint64_t* v : {&q.desc, &q.avail, &q.used}) *v = r.u64();
    }
  }
  if (r.remaining() != 0) return err("section 'devices': {} bytes past the last device", r.remaining());
  return {};
}

Result<> decode_raw(uint32_t tag, std::span<const uint8_t> b, TemplateState& s) {
  Result<> r;
  for_each_raw_section(s, [&](uint32_t t, auto* field) {
    if (t != tag) return;
    if (b.size() != sizeof *field) {
      r = err("section '{}': {} bytes, expected {}", tag_name(tag), b.size(), sizeof *field);
      return;
    }
    std::memcpy(field, b.data(), sizeof *field);
  });
  return r;
}

Result<> decode_section(uint32_t tag, std::span<const uint8_t> b, TemplateState& s) {
  switch (tag) {
    case kMsrs: return decode_msrs(b, s.vcpu.msrs);
    case kCpuid: return decode_cpuid(b, s.cpuid);
    case kSerial: return decode_serial(b, s.serial);
    case kDevices: return decode_devices(b, s.devices);
    default: return decode_raw(tag, b, s);
  }
}

}  // namespace

Result<std::vector<uint8_t>> encode_payload(const TemplateState& s) {
  if (s.vcpu.msrs.size() > kMaxMsrs) {
    return err("{} MSRs, the format allows at most {}", s.vcpu.msrs.size(), kMaxMsrs);
  }
  if (s.cpuid.size() > kMaxCpuidEntries) {
    return err("{} CPUID entries, the format allows at most {}", s.cpuid.size(), kMaxCpuidEntries);
  }
  ByteWriter w;
  size_t len_at = 0;
  for_each_raw_section(s, [&](uint32_t tag, const auto* field) {
    begin_section(w, tag, len_at);
    w.bytes(field, sizeof *field);
    end_section(w, len_at);
  });
  begin_section(w, kMsrs, len_at);
  encode_msrs(w, s.vcpu.msrs);
  end_section(w, len_at);
  begin_section(w, kCpuid, len_at);
  encode_cpuid(w, s.cpuid);
  end_section(w, len_at);
  begin_section(w, kSerial, len_at);
  encode_serial(w, s.serial);
  end_section(w, len_at);
  if (s.devices.size() > kMaxDevices) return err("{} devices, the format allows at most {}", s.devices.size(), kMaxDevices);
  for (const auto& d : s.devices) {
    if (d.spec.path.size() > kMaxDevicePath)
      return err("device {}: a {}-byte path, the format allows at most {}", d.spec.path, d.spec.path.size(), kMaxDevicePath);
    if (d.transport.queues.size() > kMaxDeviceQueues)
      return err("device {} (virtio id {}): {} queues, the format allows at most {}", d.spec.path, d.spec.device_id,
                 d.transport.queues.size(), kMaxDeviceQueues);
  }
  begin_section(w, kDevices, len_at);
  encode_devices(w, s.devices);
  end_section(w, len_at);
  return w.take();
}

Result<> decode_payload(std::span<const uint8_t> payload, TemplateState& s) {
  ByteReader r(payload);
  std::array<bool, kLastTag + 1> seen{};
  while (r.remaining() > 0) {
    size_t at = r.offset();
    if (r.remaining() < 8) return err("truncated section header at payload offset {}", at);
    uint32_t tag = r.u32();
    uint32_t len = r.u32();
    if (tag == 0 || tag > kLastTag) return err("unknown section tag {} at payload offset {}", tag, at);
    if (len > r.remaining()) {
      return err("section '{}' claims {} bytes, the payload has {} left", tag_name(tag), len,
                 r.remaining());
    }
    if (seen[tag]) return err("duplicate section '{}'", tag_name(tag));
    seen[tag] = true;
    VIC_TRY(decode_section(tag, r.take(len), s));
  }
  for (uint32_t tag = 1; tag <= kLastTag; ++tag) {
    if (!seen[tag]) return err("missing section '{}'", tag_name(tag));
  }
  return {};
}

}  // namespace snapshot_detail

// ============================================================================

namespace {

using namespace snapshot_detail;

std::string path_in(const std::string& dir, const char* file) { return dir + "/" + file; }

// "a/b/" -> "a/b" (but "/" stays "/").
std::string strip_trailing_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::string parent_of(const std::string& dir) {
  size_t slash = dir.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : dir.substr(0, slash);
}

Result<> fsync_path(const std::string& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err("{}: open for fsync", path);
  if (::fsync(fd.get()) < 0) return sys_err("{}: fsync", path);
  return {};
}

// ---- writing ------------------------------------------------------------------

Result<> write_memory_file(const std::string& path, std::span<const uint8_t> memory) {
  const std::string what = "snapshot " + path;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return sys_err("{}: create", what);
  if (::ftruncate(fd.get(), static_cast<off_t>(memory.size())) < 0) {
    return sys_err("{}: ftruncate to {} bytes", what, memory.size());
  }
  // Write each run of non-zero pages with one pwrite; zero pages stay holes.
  const uint64_t pages = page_count(memory.size());
  for (uint64_t p = 0; p < pages;) {
    if (is_zero_page(page_of(memory, p))) {
      ++p;
      continue;
    }
    uint64_t q = p + 1;
    while (q < pages && q - p < 4096 && !is_zero_page(page_of(memory, q))) ++q;
    uint64_t off = p * kPageSize;
    uint64_t end = std::min<uint64_t>(q * kPageSize, memory.size());
    VIC_TRY(pwrite_full(fd.get(), memory.data() + off, end - off, off, what));
    p = q;
  }
  if (::fsync(fd.get()) < 0) return sys_err("{}: fsync", what);
  return {};
}

Result<> write_state_file(const std::string& path, std::span<const uint8_t> header,
                          std::span<const uint8_t> payload) {
  const std::string what = "snapshot " + path;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return sys_err("{}: create", what);
  VIC_TRY(pwrite_full(fd.get(), header.data(), header.size(), 0, what));
  VIC_TRY(pwrite_full(fd.get(), payload.data(), payload.size(), header.size(), what));
  if (::fsync(fd.get()) < 0) return sys_err("{}: fsync", what);
  return {};
}

// Removes a (temp or old) snapshot directory: its two files, then itself.
// Refuses (rmdir fails) if it holds anything else.
Result<> remove_snapshot_dir(const std::string& dir) {
  for (const char* f : {kStateFile, kMemoryFile}) {
    std::string p = path_in(dir, f);
    if (::unlink(p.c_str()) < 0 && errno != ENOENT) return sys_err("{}: unlink", p);
  }
  if (::rmdir(dir.c_str()) < 0) return sys_err("{}: rmdir", dir);
  return {};
}

// An existing `dir` may be replaced only if it is a directory holding at
// most state.bin and memory.bin, so a mistyped path cannot delete a tree.
Result<> check_replaceable(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return sys_err("snapshot {}: exists and cannot be listed; not replacing it", dir);
  while (const dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || name == kStateFile || name == kMemoryFile) continue;
    return err("snapshot {}: exists and is not a snapshot directory (it holds '{}'); not replacing it",
               dir, name);
  }
  return {};
}

// Early check, so the common mistake fails before any work. (The rename in
// install() re-checks atomically.)
Result<> check_target(const std::string& dir, bool replace) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) < 0) {
    if (errno == ENOENT) return {};
    return sys_err("snapshot {}", dir);
  }
  if (!replace) return err("snapshot {}: already exists", dir);
  return check_replaceable(dir);
}

// Renames the finished temp dir onto `dir`; with `replace`, swaps it with an
// existing snapshot there and removes the old one (now at `tmp`).
Result<> install(const std::string& tmp, const std::string& dir, bool replace) {
  const std::string parent = parent_of(dir);
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) == 0) {
    return fsync_path(parent, O_DIRECTORY);
  }
  if (errno != EEXIST) return sys_err("snapshot {}: rename {} onto it", dir, tmp);
  if (!replace) return err("snapshot {}: already exists", dir);
  VIC_TRY(check_replaceable(dir));
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) < 0) {
    return sys_err("snapshot {}: swap with {}", dir, tmp);
  }
  VIC_TRY(fsync_path(parent, O_DIRECTORY));
  auto removed = remove_snapshot_dir(tmp);
  if (!removed) {
    return err("snapshot {}: written, but removing the old snapshot (moved to {}) failed: {}", dir,
               tmp, removed.error().message);
  }
  return {};
}

Result<> fill_and_install(const std::string& tmp, const std::string& dir, const TemplateState& state,
                          std::span<const uint8_t> payload, std::span<const uint8_t> memory,
                          bool replace) {
  Header h = make_header(state, payload.size(), payload_checksum(payload), memory_checksum(memory));
  auto header = encode_header(h);
  VIC_TRY(write_memory_file(path_in(tmp, kMemoryFile), memory));
  VIC_TRY(write_state_file(path_in(tmp, kStateFile), header, payload));
  VIC_TRY(fsync_path(tmp, O_DIRECTORY));
  return install(tmp, dir, replace);
}

// ---- reading ------------------------------------------------------------------

Result<> check_is_dir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) return sys_err("snapshot {}", dir);
  if (!S_ISDIR(st.st_mode)) return err("snapshot {}: not a directory", dir);
  return {};
}

// Reads a whole small regular file (at most `max` bytes).
Result<std::vector<uint8_t>> read_small_file(int fd, uint64_t max, const std::string& what) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return sys_err("{}: fstat", what);
  if (!S_ISREG(st.st_mode)) return err("{}: not a regular file", what);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max) return err("{}: {} bytes, larger than any valid state file", what, size);
  std::vector<uint8_t> bytes(size);
  VIC_TRY(pread_full(fd, bytes.data(), bytes.size(), 0, what));
  return bytes;
}

Result<HostKind> decode_host_kind(uint32_t v) {
  if (v == 0) return HostKind::HardwareKvm;
  if (v == 1) return HostKind::NestedPvm;
  return err("unknown host kind {}", v);
}

// Magic and version first: a file of another version may have another layout.
Result<> check_identity(std::span<const uint8_t> b) {
  if (b.size() >= sizeof kMagic && std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) {
    return err("bad magic (not a vicvmm snapshot)");
  }
  if (b.size() >= 12) {
    uint32_t version = static_cast<uint32_t>(get_le(b.data() + 8, 4));
    if (version != kFormatVersion) {
      return err("format version {}, this vicvmm reads {}", version, kFormatVersion);
    }
  }
  if (b.size() < kHeaderSize) return err("truncated header ({} of {} bytes)", b.size(), kHeaderSize);
  return {};
}

Result<> check_struct_sizes(const Header& h) {
  if (h.struct_count != kStructCount) {
    return err("written with {} KVM struct sizes, this vicvmm has {}", h.struct_count, kStructCount);
  }
  for (size_t i = 0; i < kStructCount; ++i) {
    if (h.struct_sizes[i] != struct_sizes()[i]) {
      return err("written with sizeof({}) = {}, this vicvmm has {}", struct_names()[i],
                 h.struct_sizes[i], struct_sizes()[i]);
    }
  }
  return {};
}

// Validates everything the header alone can tell. Errors carry no file prefix.
Result<Header> check_header(std::span<const uint8_t> b, HostKind expected_host) {
  VIC_TRY(check_identity(b));
  Header h = decode_header(b);
  if (h.header_hash != header_checksum(b)) return err("header checksum mismatch");
  if (h.header_size != kHeaderSize) {
    return err("header size {}, format version {} has {}", h.header_size, kFormatVersion, kHeaderSize);
  }
  VIC_ASSIGN(HostKind host, decode_host_kind(h.host_kind));
  if (host != expected_host) {
    return err("snapshot was taken on a {} host, this is a {} host", host_kind_name(host),
               host_kind_name(expected_host));
  }
  VIC_TRY(check_struct_sizes(h));
  if (h.payload_size > kMaxPayloadSize) {
    return err("payload size {} exceeds the {} byte limit", h.payload_size, kMaxPayloadSize);
  }
  // --mem's upper bound: a hand-made header (the checksums are no MAC)
  // cannot ask for 1 TiB of guest memory backed by a sparse file.
  if (h.mem_size == 0 || h.mem_size > kMaxGuestMemory || h.mem_size % kPageSize) {
    return err("guest memory of {} bytes: vicvmm runs 4 KiB multiples up to {} GiB", h.mem_size,
               kMaxGuestMemory >> 30);
  }
  return h;
}

Result<std::span<const uint8_t>> check_payload(std::span<const uint8_t> b, const Header& h) {
  uint64_t have = b.size() - kHeaderSize;
  if (have < h.payload_size) return err("truncated payload ({} of {} bytes)", have, h.payload_size);
  if (have > h.payload_size) return err("{} trailing bytes after the payload", have - h.payload_size);
  auto payload = b.subspan(kHeaderSize);
  if (payload_checksum(payload) != h.payload_hash) return err("payload checksum mismatch");
  return payload;
}

struct StateFile {
  Header header;
  TemplateState state;
};

Result<StateFile> parse_state(std::span<const uint8_t> b, HostKind expected_host) {
  StateFile f;
  VIC_ASSIGN(f.header, check_header(b, expected_host));
  VIC_ASSIGN(auto payload, check_payload(b, f.header));
  f.state.host = expected_host;  // == the header's, checked above
  f.state.mem_size = f.header.mem_size;
  VIC_TRY(decode_payload(payload, f.state));
  return f;
}

// O_NONBLOCK so that a FIFO planted in a snapshot cannot hang the open;
// only a regular file is read.
Result<UniqueFd> open_regular(const std::string& path, const std::string& what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return sys_err("{}", what);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return sys_err("{}: fstat", what);
  if (!S_ISREG(st.st_mode)) return err("{}: not a regular file", what);
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) < 0) return sys_err("{}: fcntl", what);
  return fd;
}

Result<StateFile> read_state_file(const std::string& path, HostKind expected_host) {
  const std::string what = "snapshot " + path;
  VIC_ASSIGN(UniqueFd fd, open_regular(path, what));
  VIC_ASSIGN(auto bytes, read_small_file(fd.get(), kHeaderSize + kMaxPayloadSize, what));
  auto parsed = parse_state(bytes, expected_host);
  if (!parsed) return with_context(parsed.error(), what);
  return std::move(*parsed);
}

Result<UniqueFd> open_memory_file(const std::string& path, uint64_t mem_size,
                                  std::optional<uint64_t> expected_hash) {
  const std::string what = "snapshot " + path;
  VIC_ASSIGN(UniqueFd fd, open_regular(path, what));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return sys_err("{}: fstat", what);
  if (static_cast<uint64_t>(st.st_size) != mem_size) {
    return err("{}: {} bytes, expected {}", what, st.st_size, mem_size);
  }
  if (expected_hash) {
    VIC_ASSIGN(uint64_t hash, memory_checksum_fd(fd.get(), mem_size, what));
    if (hash != *expected_hash) return err("{}: memory checksum mismatch", what);
  }
  return fd;
}

// The file's data extents into a new memfd (holes stay holes), sealed
// against writes and size changes. A file that shrinks under the copy
// reads short: an error, not a SIGBUS.
Result<UniqueFd> sealed_copy(int src, uint64_t size, const std::string& what) {
  UniqueFd mfd(static_cast<int>(::syscall(SYS_memfd_create, "vicvmm-snapshot", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!mfd) return sys_err("{}: memfd_create", what);
  if (::ftruncate(mfd.get(), static_cast<off_t>(size)) != 0) return sys_err("{}: sizing its copy", what);
  std::vector<uint8_t> buf(1 << 20);
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // holes to the end
    if (data < 0) return sys_err("{}: lseek(SEEK_DATA)", what);
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0) return sys_err("{}: lseek(SEEK_HOLE)", what);
    uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    for (uint64_t off = static_cast<uint64_t>(data); off < end;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - off));
      ssize_t n = ::pread(src, buf.data(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return sys_err("{}: reading", what);
      if (n == 0) return err("{}: the file shrank while it was being copied", what);
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::pwrite(mfd.get(), buf.data() + done, static_cast<size_t>(n - done), static_cast<off_t>(off) + done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return sys_err("{}: writing its copy", what);
        done += w;
      }
      off += static_cast<uint64_t>(n);
    }
    pos = end;
  }
  if (::fcntl(mfd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return sys_err("{}: sealing its copy", what);
  return mfd;
}

}  // namespace

Result<> write_snapshot(const std::string& dir_arg, const TemplateState& state,
                        std::span<const uint8_t> memory, bool replace) {
  if (dir_arg.empty()) return err("snapshot: empty directory path");
  const std::string dir = strip_trailing_slashes(dir_arg);
  if (memory.size() != state.mem_size) {
    return err("snapshot {}: memory image is {} bytes, mem_size is {}", dir, memory.size(),
               state.mem_size);
  }
  auto payload = encode_payload(state);
  if (!payload) return with_context(payload.error(), "snapshot " + dir);
  VIC_TRY(check_target(dir, replace));

  std::string tmp = dir + ".tmp-XXXXXX";
  if (!::mkdtemp(tmp.data())) return sys_err("snapshot {}: creating temp dir {}", dir, tmp);
  auto r = fill_and_install(tmp, dir, state, *payload, memory, replace);
  if (!r && ::access(tmp.c_str(), F_OK) == 0) (void)remove_snapshot_dir(tmp);
  return r;
}

Result<LoadedSnapshot> read_snapshot(const std::string& dir_arg, HostKind expected_host,
                                     bool verify_memory, SnapshotMemory how) {
  if (dir_arg.empty()) return err("snapshot: empty directory path");
  const std::string dir = strip_trailing_slashes(dir_arg);
  VIC_TRY(check_is_dir(dir));
  VIC_ASSIGN(StateFile f, read_state_file(path_in(dir, kStateFile), expected_host));
  std::optional<uint64_t> hash;
  if (verify_memory) hash = f.header.memory_hash;
  const std::string memory_path = path_in(dir, kMemoryFile);
  // A copy is verified after copying: the file may change meanwhile.
  VIC_ASSIGN(UniqueFd fd, open_memory_file(memory_path, f.state.mem_size,
                                           how == SnapshotMemory::MapFile ? hash : std::nullopt));
  if (how == SnapshotMemory::SealedCopy) {
    VIC_ASSIGN(fd, sealed_copy(fd.get(), f.state.mem_size, "snapshot " + memory_path));
    if (hash) {
      VIC_ASSIGN(uint64_t h, memory_checksum_fd(fd.get(), f.state.mem_size, "snapshot " + memory_path));
      if (h != *hash) return err("snapshot {}: memory checksum mismatch", memory_path);
    }
  }
  return LoadedSnapshot{std::move(f.state), std::move(fd)};
}

}  // namespace vicvmm
