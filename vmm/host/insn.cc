#include "vmm/host/insn.h"

namespace vicvmm {

const char* assist_name(AssistKind k) {
  switch (k) {
    case AssistKind::None: return "none";
    case AssistKind::Int3: return "int3";
    case AssistKind::Ud2: return "ud2";
    case AssistKind::Clac: return "clac";
    case AssistKind::Stac: return "stac";
    case AssistKind::SkipX87: return "x87-control";
    case AssistKind::SkipLdmxcsr: return "ldmxcsr";
    case AssistKind::kCount: break;
  }
  return "?";
}

namespace {

bool is_legacy_prefix(uint8_t b) {
  switch (b) {
    case 0x66: case 0x67: case 0xf0: case 0xf2: case 0xf3:
    case 0x2e: case 0x36: case 0x3e: case 0x26: case 0x64: case 0x65:
      return true;
  }
  return false;
}

// Decodes a ModRM memory operand (64-bit mode) into `m`; returns the bytes
// it spans (ModRM + SIB + displacement), or 0 if truncated.
size_t decode_modrm(std::span<const uint8_t> b, uint8_t rex, MemOperand& m) {
  if (b.empty()) return 0;
  uint8_t modrm = b[0];
  uint8_t mod = modrm >> 6, rm = modrm & 7;
  size_t len = 1;
  int disp_bytes = mod == 1 ? 1 : mod == 2 ? 4 : 0;
  if (rm == 4) {  // SIB follows
    if (b.size() < 2) return 0;
    uint8_t sib = b[1];
    len = 2;
    m.scale = static_cast<uint8_t>(1u << (sib >> 6));
    int index = ((sib >> 3) & 7) | ((rex & 2) << 2);
    m.index = index == 4 ? -1 : index;  // rsp cannot be an index
    int base = (sib & 7) | ((rex & 1) << 3);
    if ((sib & 7) == 5 && mod == 0) {
      m.base = -1;  // no base: disp32
      disp_bytes = 4;
    } else {
      m.base = base;
    }
  } else if (mod == 0 && rm == 5) {
    m.rip_relative = true;
    disp_bytes = 4;
  } else {
    m.base = rm | ((rex & 1) << 3);
  }
  if (b.size() < len + static_cast<size_t>(disp_bytes)) return 0;
  if (disp_bytes == 1) m.disp = static_cast<int8_t>(b[len]);
  if (disp_bytes == 4)
    m.disp = static_cast<int32_t>(b[len] | (b[len + 1] << 8) | (b[len + 2] << 16) |
                                  (static_cast<uint32_t>(b[len + 3]) << 24));
  return len + static_cast<size_t>(disp_bytes);
}

}  // namespace

AssistAction classify_instruction(std::span<const uint8_t> b) {
  size_t i = 0;
  MemOperand mem;
  for (; i < b.size() && i < 14 && is_legacy_prefix(b[i]); ++i) {
    if (b[i] == 0x67) mem.addr32 = true;
    if (b[i] == 0x64 || b[i] == 0x65) mem.segment = b[i];
  }
  uint8_t rex = 0;
  if (i < b.size() && (b[i] & 0xf0) == 0x40) rex = b[i++];
  if (i >= b.size()) return {};
  auto done = [&](AssistKind k, size_t len) { return AssistAction{k, static_cast<uint8_t>(len)}; };

  uint8_t op = b[i];
  if (op == 0xcc) return done(AssistKind::Int3, i + 1);
  if (op == 0x9b) return done(AssistKind::SkipX87, i + 1);
  if (op == 0xdb && i + 1 < b.size() && (b[i + 1] == 0xe2 || b[i + 1] == 0xe3))
    return done(AssistKind::SkipX87, i + 2);
  if (op != 0x0f || i + 1 >= b.size()) return {};

  uint8_t op2 = b[i + 1];
  if (op2 == 0x0b) return done(AssistKind::Ud2, i + 2);
  if (op2 == 0x01 && i + 2 < b.size()) {
    if (b[i + 2] == 0xca) return done(AssistKind::Clac, i + 3);
    if (b[i + 2] == 0xcb) return done(AssistKind::Stac, i + 3);
    return {};
  }
  if (op2 == 0xae && i + 2 < b.size()) {
    uint8_t modrm = b[i + 2];
    // 0F AE /2 with a memory operand is LDMXCSR (mod 3 encodes other ops).
    if ((modrm >> 6) != 3 && ((modrm >> 3) & 7) == 2) {
      size_t m = decode_modrm(b.subspan(i + 2), rex, mem);
      if (m) {
        AssistAction a = done(AssistKind::SkipLdmxcsr, i + 2 + m);
        a.mem = mem;
        return a;
      }
    }
  }
  return {};
}

}  // namespace vicvmm
