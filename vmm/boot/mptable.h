// Intel MultiProcessor Specification 1.4 table: tells a kernel without ACPI
// where the CPUs, the IOAPIC and the ISA interrupts are. Without it Linux
// also scans the BIOS area byte-range by byte-range, which is slow here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmm/boot/layout.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"

namespace vicvmm::boot {

struct [[gnu::packed]] MpFloatingPointer {
  char signature[4];  // "_MP_"
  uint32_t physptr;   // config table address
  uint8_t length;     // in 16-byte units: 1
  uint8_t spec;       // 4 = version 1.4
  uint8_t checksum;   // the 16 bytes sum to 0
  uint8_t feature[5];
};

struct [[gnu::packed]] MpConfigTable {
  char signature[4];  // "PCMP"
  uint16_t length;    // header and all entries
  uint8_t spec;
  uint8_t checksum;   // the whole table sums to 0
  char oem[8];
  char product[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_addr;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};

struct [[gnu::packed]] MpCpu {
  uint8_t type;  // 0
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit 0 enabled, bit 1 bootstrap processor
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};

struct [[gnu::packed]] MpBus {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];
};

struct [[gnu::packed]] MpIoApic {
  uint8_t type;  // 2
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit 0 usable
  uint32_t addr;
};

// I/O (type 3) and local (type 4) interrupt assignments share one layout.
struct [[gnu::packed]] MpInterrupt {
  uint8_t type;
  uint8_t irq_type;   // 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t irq_flags; // 0: polarity and trigger conform to the bus
  uint8_t src_bus;
  uint8_t src_irq;
  uint8_t dst_apic;   // IOAPIC id (type 3) or local APIC id, 0xff = all (type 4)
  uint8_t dst_pin;    // IOAPIC pin or LINTn
};

static_assert(sizeof(MpFloatingPointer) == 16);
static_assert(sizeof(MpConfigTable) == 44);
static_assert(sizeof(MpCpu) == 20);
static_assert(sizeof(MpBus) == 8 && sizeof(MpIoApic) == 8 && sizeof(MpInterrupt) == 8);

inline constexpr unsigned kMpMaxCpus = 254;  // APIC ids 0..253, the IOAPIC takes the next one
inline constexpr unsigned kMpIrqCount = 24;  // every pin of KVM's IOAPIC (GSI n -> pin n)
inline constexpr uint32_t kIoApicAddr = 0xfec0'0000;
inline constexpr uint32_t kLocalApicAddr = 0xfee0'0000;

// Bytes the floating pointer and config table take for `ncpus` CPUs.
constexpr size_t mptable_size(unsigned ncpus) {
  return sizeof(MpFloatingPointer) + sizeof(MpConfigTable) + ncpus * sizeof(MpCpu) + sizeof(MpBus) +
         sizeof(MpIoApic) + (kMpIrqCount + 2) * sizeof(MpInterrupt);
}

// The most vCPUs whose table fits below kMpTableLimit: the real limit.
inline constexpr unsigned kMpFitCpus = static_cast<unsigned>((kMpTableLimit - kMpTableGpa - mptable_size(0)) / sizeof(MpCpu));
static_assert(kMpFitCpus == 37 && kMpFitCpus <= kMpMaxCpus);

// Writes the floating pointer at kMpTableGpa and the config table right
// after it: CPUs with APIC ids 0..ncpus-1 (cpu 0 the BSP), ISA bus 0, the
// IOAPIC (id ncpus), ISA IRQs 0..kMpIrqCount-1 to the same IOAPIC pins,
// ExtINT on LINT0 and NMI on LINT1. Fails for 0 CPUs, more than kMpMaxCpus,
// or a table that would cross kMpTableLimit (0xa0000).
Result<> write_mptable(GuestMemory& mem, unsigned ncpus);

}  // namespace vicvmm::boot
