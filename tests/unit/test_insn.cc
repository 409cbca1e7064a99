#include <catch2/catch.hpp>

#include "vmm/host/insn.h"

using namespace vicvmm;

static AssistAction classify(std::initializer_list<uint8_t> b) {
  std::vector<uint8_t> v(b);
  return classify_instruction(v);
}

TEST_CASE("emulation assist recognises the instructions the nested host cannot emulate") {
  CHECK(classify({0xcc}).kind == AssistKind::Int3);
  CHECK(classify({0xcc}).length == 1);
  CHECK(classify({0x0f, 0x0b}).kind == AssistKind::Ud2);
  CHECK(classify({0x0f, 0x0b}).length == 2);
  CHECK(classify({0x0f, 0x01, 0xca}).kind == AssistKind::Clac);
  CHECK(classify({0x0f, 0x01, 0xcb}).kind == AssistKind::Stac);
  CHECK(classify({0x0f, 0x01, 0xcb}).length == 3);
  CHECK(classify({0x9b}).kind == AssistKind::SkipX87);
  CHECK(classify({0xdb, 0xe2}).length == 2);   // fnclex
  CHECK(classify({0xdb, 0xe3}).kind == AssistKind::SkipX87);  // fninit
}

TEST_CASE("ldmxcsr length covers ModRM, SIB and displacement") {
  // ldmxcsr (%rax): 0f ae 10
  CHECK(classify({0x0f, 0xae, 0x10}).kind == AssistKind::SkipLdmxcsr);
  CHECK(classify({0x0f, 0xae, 0x10}).length == 3);
  // ldmxcsr 0x8(%rsp): 0f ae 54 24 08  (SIB + disp8)
  CHECK(classify({0x0f, 0xae, 0x54, 0x24, 0x08}).length == 5);
  // ldmxcsr 0x12345678(%rip): 0f ae 15 78 56 34 12
  CHECK(classify({0x0f, 0xae, 0x15, 0x78, 0x56, 0x34, 0x12}).length == 7);
  // with a REX prefix: 41 0f ae 50 10 = ldmxcsr 0x10(%r8)
  CHECK(classify({0x41, 0x0f, 0xae, 0x50, 0x10}).length == 5);
  // truncated displacement: not ours to guess
  CHECK(classify({0x0f, 0xae, 0x15, 0x78}).kind == AssistKind::None);
}

TEST_CASE("other instructions are left alone") {
  CHECK(classify({0x90}).kind == AssistKind::None);                // nop
  CHECK(classify({0x0f, 0xae, 0x18}).kind == AssistKind::None);    // stmxcsr: writes memory, never skipped
  CHECK(classify({0x0f, 0xae, 0xf0}).kind == AssistKind::None);    // mfence (mod 3)
  CHECK(classify({0x0f, 0x01, 0xd0}).kind == AssistKind::None);    // xgetbv
  CHECK(classify({0xdb, 0x28}).kind == AssistKind::None);          // fld m80
  CHECK(classify({}).kind == AssistKind::None);
  CHECK(classify({0x66, 0x66, 0x66}).kind == AssistKind::None);    // prefixes only
}
