#include "vmm/boot/mptable.h"

#include <cstring>
#include <span>
#include <vector>

#include "vmm/boot/layout.h"

namespace vicvmm::boot {
namespace {

constexpr uint8_t kEntryCpu = 0, kEntryBus = 1, kEntryIoApic = 2, kEntryIoInt = 3, kEntryLocalInt = 4;
constexpr uint8_t kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3;
constexpr uint8_t kCpuEnabled = 1, kCpuBootstrap = 2;
constexpr uint8_t kLocalApicVersion = 0x14;  // what KVM's local APIC reports
constexpr uint8_t kIoApicVersion = 0x11;     // what KVM's IOAPIC reports
constexpr uint8_t kIsaBus = 0;

uint8_t checksum(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = static_cast<uint8_t>(sum + b);
  return static_cast<uint8_t>(-sum);
}

// Serialises the table into a buffer sized by mptable_size().
class TableWriter {
 public:
  explicit TableWriter(size_t size) : bytes_(size) {}
  template <class T>
  void put(const T& v) {
    std::memcpy(bytes_.data() + pos_, &v, sizeof(T));
    pos_ += sizeof(T);
  }
  std::span<uint8_t> bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
  size_t pos_ = 0;
};

// All config-table entries after its header, processors first as Linux
// expects; returns the entry count.
uint16_t put_entries(TableWriter& w, unsigned ncpus) {
  for (unsigned i = 0; i < ncpus; i++) {
    MpCpu cpu{};
    cpu.type = kEntryCpu;
    cpu.apic_id = static_cast<uint8_t>(i);
    cpu.apic_version = kLocalApicVersion;
    cpu.flags = kCpuEnabled | (i == 0 ? kCpuBootstrap : 0);
    cpu.signature = 0x600;  // family 6, as Firecracker and kvmtool report
    cpu.features = 0x201;   // FPU | APIC
    w.put(cpu);
  }
  w.put(MpBus{kEntryBus, kIsaBus, {'I', 'S', 'A', ' ', ' ', ' '}});
  const auto ioapic_id = static_cast<uint8_t>(ncpus);
  w.put(MpIoApic{kEntryIoApic, ioapic_id, kIoApicVersion, 1, kIoApicAddr});
  for (unsigned irq = 0; irq < kMpIrqCount; irq++) {
    const auto pin = static_cast<uint8_t>(irq);
    w.put(MpInterrupt{kEntryIoInt, kIntTypeInt, 0, kIsaBus, pin, ioapic_id, pin});
  }
  w.put(MpInterrupt{kEntryLocalInt, kIntTypeExtInt, 0, kIsaBus, 0, 0, 0});  // PIC -> BSP's LINT0
  w.put(MpInterrupt{kEntryLocalInt, kIntTypeNmi, 0, kIsaBus, 0, 0xff, 1});   // NMI -> every LINT1
  return static_cast<uint16_t>(ncpus + 1 + 1 + kMpIrqCount + 2);
}

MpFloatingPointer floating_pointer(uint32_t config_gpa) {
  MpFloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.physptr = config_gpa;
  fp.length = 1;
  fp.spec = 4;
  fp.checksum = checksum({reinterpret_cast<const uint8_t*>(&fp), sizeof(fp)});
  return fp;
}

MpConfigTable config_header(size_t length, uint16_t entries) {
  MpConfigTable hdr{};
  std::memcpy(hdr.signature, "PCMP", 4);
  hdr.length = static_cast<uint16_t>(length);
  hdr.spec = 4;
  std::memcpy(hdr.oem, "VICVMM  ", 8);
  std::memcpy(hdr.product, "MICROVM     ", 12);
  hdr.entry_count = entries;
  hdr.lapic_addr = kLocalApicAddr;
  return hdr;
}

}  // namespace

Result<> write_mptable(GuestMemory& mem, unsigned ncpus) {
  if (ncpus == 0) return err("MP table: need at least one vCPU");
  if (ncpus > kMpMaxCpus) return err("MP table: {} vCPUs exceed the limit of {}", ncpus, kMpMaxCpus);
  if (kMpTableGpa + mptable_size(ncpus) > kMpTableLimit)
    return err("MP table: {} vCPUs need {} bytes, only {} fit between {:#x} and {:#x}", ncpus,
               mptable_size(ncpus), kMpTableLimit - kMpTableGpa, kMpTableGpa, kMpTableLimit);

  // Floating pointer, then the config table right after it.
  constexpr uint64_t config_gpa = kMpTableGpa + sizeof(MpFloatingPointer);
  TableWriter w(mptable_size(ncpus));
  w.put(floating_pointer(static_cast<uint32_t>(config_gpa)));
  w.put(MpConfigTable{});  // placeholder until the length is known
  uint16_t entries = put_entries(w, ncpus);
  std::span<uint8_t> table = w.bytes().subspan(sizeof(MpFloatingPointer));
  MpConfigTable hdr = config_header(table.size(), entries);
  std::memcpy(table.data(), &hdr, sizeof(hdr));
  table[offsetof(MpConfigTable, checksum)] = checksum(table);

  auto r = mem.write(kMpTableGpa, w.bytes());
  if (!r) return with_context(r.error(), "MP table");
  return {};
}

}  // namespace vicvmm::boot
