#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/mptable.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::error_of;
using vicvmm::test::kMiB;
using vicvmm::test::make_mem;

namespace {

uint8_t byte_sum(const GuestMemory& mem, uint64_t gpa, size_t len) {
  std::vector<uint8_t> buf(len);
  REQUIRE(mem.read(gpa, buf));
  uint8_t sum = 0;
  for (uint8_t b : buf) sum = static_cast<uint8_t>(sum + b);
  return sum;
}

size_t entry_size(uint8_t type) { return type == 0 ? sizeof(MpCpu) : 8; }

struct Parsed {
  MpFloatingPointer fp;
  MpConfigTable table;
  std::vector<MpCpu> cpus;
  std::vector<MpBus> buses;
  std::vector<MpIoApic> ioapics;
  std::vector<MpInterrupt> io_ints;
  std::vector<MpInterrupt> local_ints;
};

// Reads the table back the way a kernel does: floating pointer, then entries by type.
Parsed parse(const GuestMemory& mem) {
  Parsed p;
  p.fp = mem.read_obj<MpFloatingPointer>(kMpTableGpa).value();
  p.table = mem.read_obj<MpConfigTable>(p.fp.physptr).value();
  uint64_t at = p.fp.physptr + sizeof(MpConfigTable);
  const uint64_t end = p.fp.physptr + p.table.length;
  while (at < end) {
    auto type = mem.read_obj<uint8_t>(at).value();
    switch (type) {
      case 0: p.cpus.push_back(mem.read_obj<MpCpu>(at).value()); break;
      case 1: p.buses.push_back(mem.read_obj<MpBus>(at).value()); break;
      case 2: p.ioapics.push_back(mem.read_obj<MpIoApic>(at).value()); break;
      case 3: p.io_ints.push_back(mem.read_obj<MpInterrupt>(at).value()); break;
      case 4: p.local_ints.push_back(mem.read_obj<MpInterrupt>(at).value()); break;
      default: FAIL("unknown MP entry type " << int{type});
    }
    at += entry_size(type);
  }
  CHECK(at == end);
  return p;
}

}  // namespace

TEST_CASE("mptable: checksums and signatures", "[mptable]") {
  auto mem = make_mem(16 * kMiB);
  for (unsigned n : {1u, 2u, 4u, 37u}) {
    INFO("ncpus = " << n);
    REQUIRE(write_mptable(mem, n));
    Parsed p = parse(mem);
    CHECK(std::memcmp(p.fp.signature, "_MP_", 4) == 0);
    CHECK(p.fp.length == 1);
    CHECK(p.fp.spec == 4);
    CHECK(byte_sum(mem, kMpTableGpa, 16) == 0);
    CHECK(p.fp.physptr == kMpTableGpa + 16);
    CHECK(std::memcmp(p.table.signature, "PCMP", 4) == 0);
    CHECK(p.table.spec == 4);
    CHECK(p.table.lapic_addr == 0xfee00000u);
    CHECK(byte_sum(mem, p.fp.physptr, p.table.length) == 0);
    CHECK(size_t{16} + p.table.length == mptable_size(n));
    CHECK(kMpTableGpa + mptable_size(n) <= 0xa0000);
  }
}

TEST_CASE("mptable: entry counts and contents", "[mptable]") {
  auto mem = make_mem(16 * kMiB);
  REQUIRE(write_mptable(mem, 4));
  Parsed p = parse(mem);
  CHECK(p.table.entry_count == 4 + 1 + 1 + kMpIrqCount + 2);

  REQUIRE(p.cpus.size() == 4);
  for (unsigned i = 0; i < 4; i++) {
    CHECK(p.cpus[i].apic_id == i);
    CHECK((p.cpus[i].flags & 1) == 1);                   // enabled
    CHECK(((p.cpus[i].flags & 2) != 0) == (i == 0));     // only cpu 0 is the BSP
  }
  REQUIRE(p.buses.size() == 1);
  CHECK(std::memcmp(p.buses[0].bus_type, "ISA   ", 6) == 0);
  REQUIRE(p.ioapics.size() == 1);
  CHECK(p.ioapics[0].apic_id == 4);
  CHECK(p.ioapics[0].apic_version == 0x11);
  CHECK(p.ioapics[0].flags == 1);
  CHECK(p.ioapics[0].addr == 0xfec00000u);

  REQUIRE(p.io_ints.size() == kMpIrqCount);
  for (unsigned irq = 0; irq < kMpIrqCount; irq++) {
    CHECK(p.io_ints[irq].irq_type == 0);
    CHECK(p.io_ints[irq].src_bus == p.buses[0].bus_id);
    CHECK(p.io_ints[irq].src_irq == irq);
    CHECK(p.io_ints[irq].dst_apic == 4);
    CHECK(p.io_ints[irq].dst_pin == irq);
  }
  REQUIRE(p.local_ints.size() == 2);
  CHECK(p.local_ints[0].irq_type == 3);  // ExtINT
  CHECK(p.local_ints[0].dst_pin == 0);   // LINT0
  CHECK(p.local_ints[1].irq_type == 1);  // NMI
  CHECK(p.local_ints[1].dst_pin == 1);   // LINT1
}

TEST_CASE("mptable: bad CPU counts and small RAM are rejected", "[mptable]") {
  auto mem = make_mem(16 * kMiB);
  CHECK_THAT(error_of(write_mptable(mem, 0)), Catch::Contains("at least one vCPU"));
  CHECK_THAT(error_of(write_mptable(mem, 255)), Catch::Contains("exceed the limit of 254"));
  CHECK_THAT(error_of(write_mptable(mem, 38)), Catch::Contains("only 1024 fit"));
  CHECK(write_mptable(mem, 37));

  auto small = make_mem(0x9f000);
  CHECK_THAT(error_of(write_mptable(small, 1)),
             Catch::Contains("MP table") && Catch::Contains("outside guest RAM"));
}
