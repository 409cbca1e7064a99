// Recognises the few x86 instructions that the nested-PVM host's in-kernel
// emulator cannot execute (HOST.md) and says what the VMM should do instead.
// Pure byte decoding, no KVM: unit-tested directly.
#pragma once

#include <cstdint>
#include <span>

namespace vicvmm {

enum class AssistKind : uint8_t {
  None,          // not one we can help with
  Int3,          // inject #BP with RIP after the instruction (trap semantics)
  Ud2,           // inject #UD at the instruction (fault semantics)
  Clac,          // clear RFLAGS.AC, skip
  Stac,          // set RFLAGS.AC, skip
  SkipX87,       // fwait / fnclex / fninit: no x87 state worth keeping, skip
  SkipLdmxcsr,   // ldmxcsr m32: the VMM loads MXCSR from memory and skips
  kCount,
};

const char* assist_name(AssistKind k);

// A decoded memory operand (ModRM/SIB/displacement): the address is
// segment base + base + index * scale + disp (+ next RIP if rip_relative).
struct MemOperand {
  int base = -1;   // register number 0..15 (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15), -1: none
  int index = -1;  // same numbering, -1: none
  uint8_t scale = 1;
  int64_t disp = 0;
  bool rip_relative = false;
  bool addr32 = false;  // 0x67 prefix: the address wraps at 4 GiB
  uint8_t segment = 0;  // 0, or the prefix byte 0x64 (fs) / 0x65 (gs)
};

struct AssistAction {
  AssistKind kind = AssistKind::None;
  uint8_t length = 0;  // full instruction length including prefixes
  MemOperand mem;      // for SkipLdmxcsr: where the new MXCSR is
};

AssistAction classify_instruction(std::span<const uint8_t> bytes);

}  // namespace vicvmm
