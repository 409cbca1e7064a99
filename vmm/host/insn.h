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
  SkipLdmxcsr,   // ldmxcsr m32: keep the default MXCSR, skip
  kCount,
};

const char* assist_name(AssistKind k);

struct AssistAction {
  AssistKind kind = AssistKind::None;
  uint8_t length = 0;  // full instruction length including prefixes
};

AssistAction classify_instruction(std::span<const uint8_t> bytes);

}  // namespace vicvmm
