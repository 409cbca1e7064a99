#include <cstdint>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/gdt.h"
#include "vmm/boot/layout.h"

using namespace vicvmm;
using namespace vicvmm::boot;
using vicvmm::test::make_mem;

TEST_CASE("gdt: entries encode as the well-known flat descriptors", "[gdt]") {
  CHECK(kBootGdt[kGdtNull] == 0);
  CHECK(kBootGdt[kGdtCode] == 0x00af'9b00'0000'ffffull);
  CHECK(kBootGdt[kGdtData] == 0x00cf'9300'0000'ffffull);
  CHECK(kBootGdt[kGdtTss] == 0x008f'8b00'0000'ffffull);
  CHECK(gdt_entry(0x4092, 0x12345678, 0xabcde) == 0x124a'9234'5678'bcdeull);
  CHECK(kGdtLimit == 31);
}

TEST_CASE("gdt: segments decode for KVM", "[gdt]") {
  Segment code = segment_from_gdt(kBootGdt[kGdtCode], kGdtCode);
  CHECK(code.selector == 0x08);
  CHECK(code.base == 0);
  CHECK(code.limit == 0xffff'ffffu);
  CHECK(code.type == 0xb);
  CHECK(code.present == 1);
  CHECK(code.dpl == 0);
  CHECK(code.s == 1);
  CHECK(code.l == 1);
  CHECK(code.db == 0);
  CHECK(code.g == 1);
  CHECK(code.avl == 0);

  Segment data = segment_from_gdt(kBootGdt[kGdtData], kGdtData);
  CHECK(data.selector == 0x10);
  CHECK(data.type == 0x3);
  CHECK(data.l == 0);
  CHECK(data.db == 1);
  CHECK(data.s == 1);

  Segment tss = segment_from_gdt(kBootGdt[kGdtTss], kGdtTss);
  CHECK(tss.selector == 0x18);
  CHECK(tss.type == 0xb);
  CHECK(tss.s == 0);
  CHECK(tss.present == 1);

  Segment odd = segment_from_gdt(gdt_entry(0x40f2, 0x12345678, 0xabcde), 5);
  CHECK(odd.base == 0x12345678u);
  CHECK(odd.limit == 0xabcdeu);  // byte granular: not scaled
  CHECK(odd.dpl == 3);
  CHECK(odd.g == 0);
  CHECK(odd.selector == 0x28);

  Segment null = segment_from_gdt(0, 0);
  CHECK(null.present == 0);
}

TEST_CASE("gdt: written to guest memory with an empty IDT", "[gdt]") {
  auto mem = make_mem(1 << 20);
  REQUIRE(mem.fill(kIdtGpa, 0xcc, 16));
  REQUIRE(write_gdt(mem));
  for (unsigned i = 0; i < kBootGdt.size(); i++)
    CHECK(mem.read_obj<uint64_t>(kGdtGpa + 8 * i).value() == kBootGdt[i]);
  CHECK(mem.read_obj<uint64_t>(kIdtGpa).value() == 0);
  CHECK(mem.read_obj<uint64_t>(kIdtGpa + 8).value() == 0);
}
