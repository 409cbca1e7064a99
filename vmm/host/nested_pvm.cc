#include "vmm/host/nested_pvm.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "vmm/memory/page_walk.h"

namespace vicvmm {

const char* host_kind_name(HostKind k) {
  return k == HostKind::NestedPvm ? "nested-pvm" : "hardware-kvm";
}

HostKind detect_host_kind() {
  if (const char* forced = std::getenv("VICVMM_HOST")) {
    if (std::strcmp(forced, "pvm") == 0) return HostKind::NestedPvm;
    if (std::strcmp(forced, "hardware") == 0) return HostKind::HardwareKvm;
  }
  struct stat st {};
  return stat("/sys/module/kvm_pvm", &st) == 0 ? HostKind::NestedPvm : HostKind::HardwareKvm;
}

namespace {
constexpr const char* kClearCpuid = "clearcpuid=151,308,295,141,288,298,297,580";
// The kernel copies the clearcpuid value into a 128-byte buffer.
static_assert(std::char_traits<char>::length(kClearCpuid) - 11 < 128);
}  // namespace

std::vector<std::string> HostQuirks::kernel_cmdline_words() const {
  if (!active()) return {};
  return {
      // CPUID is not settable here: hide, by the kernel's own feature
      // bits, what its code would otherwise use: popcnt and cmpxchg16b
      // (the emulator fails on them, HOST.md), wrfsbase/rdgsbase and
      // invpcid on every context switch and TLB flush (kept out since the
      // first boots here), smap/smep (an assisted exit per clac/stac), and
      // ERMS/FSRM (memcpy/memset become byte-wise `rep movsb/stosb`, one
      // emulated step per byte). XSAVE and PCID go with noxsave/nopcid,
      // and XSAVE takes AVX* with it (cpuid_deps); the kernel has no SIMD
      // crypto or RAID code to use the rest. Numbers, not names: 6.1
      // parses clearcpuid into a 128-byte buffer and silently drops what
      // does not fit. Each bit costs ~3.6 k emulated instructions of
      // dependency walks at boot, and every word is parsed several times.
      kClearCpuid,
      "noxsave",
      "nopcid",
      // Calibration loops run emulated: trust the TSC and a fixed loops-per-jiffy.
      "tsc=reliable",
      "no_timer_check",
      "lpj=5000000",
      // Security trade-off for boot time: marking rodata walks every kernel
      // page table entry under emulation. Only on this host.
      "rodata=off",
  };
}

namespace {

uint64_t gpr(const kvm_regs& r, int n) {
  const uint64_t regs[16] = {r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                             r.r8,  r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15};
  return n >= 0 && n < 16 ? regs[n] : 0;
}

uint64_t effective_address(const MemOperand& m, const kvm_regs& regs, const kvm_sregs& sregs, uint64_t next_rip) {
  uint64_t a = static_cast<uint64_t>(m.disp);
  if (m.rip_relative) a += next_rip;
  if (m.base >= 0) a += gpr(regs, m.base);
  if (m.index >= 0) a += gpr(regs, m.index) * m.scale;
  if (m.addr32) a &= 0xffff'ffffull;
  if (m.segment == 0x64) a += sregs.fs.base;
  if (m.segment == 0x65) a += sregs.gs.base;
  return a;
}

// MXCSR lives at byte 24 of the legacy FXSAVE/XSAVE area.
constexpr size_t kXsaveMxcsrWord = 24 / 4;
constexpr uint32_t kMxcsrReserved = 0xffff'0000u;  // MXCSR_MASK 0xffff on every CPU we run on
constexpr uint64_t kCr0Em = 1u << 2, kCr0Ts = 1u << 3, kCr4Osfxsr = 1u << 9;

}  // namespace

uint64_t HostQuirks::total_assists() const {
  uint64_t t = 0;
  for (const auto& c : counts_) t += c.load();
  return t;
}

Result<bool> HostQuirks::handle_emulation_failure(Vcpu& vcpu, const GuestMemory& mem) {
  if (!active()) return false;
  VIC_ASSIGN(kvm_regs regs, vcpu.get_regs());
  VIC_ASSIGN(kvm_sregs sregs, vcpu.get_sregs());

  uint8_t bytes[15] = {};
  auto got = read_gva(mem, sregs.cr3, regs.rip, bytes);
  if (!got || *got == 0) return false;
  AssistAction a = classify_instruction({bytes, *got});
  if (a.kind == AssistKind::None) return false;

  constexpr uint64_t kRflagsAc = 1ull << 18;
  auto inject = [&](uint8_t vector, bool error_code = false) -> Result<> {
    VIC_ASSIGN(kvm_vcpu_events ev, vcpu.get_events());
    ev.exception.injected = 1;
    ev.exception.nr = vector;
    ev.exception.has_error_code = error_code ? 1 : 0;
    ev.exception.error_code = 0;
    ev.flags = 0;  // leave NMI/SIPI/shadow state as it is
    return vcpu.set_events(ev);
  };

  switch (a.kind) {
    case AssistKind::Int3:
      regs.rip += a.length;  // #BP is a trap: the handler sees the next RIP
      VIC_TRY(vcpu.set_regs(regs));
      VIC_TRY(inject(3));
      break;
    case AssistKind::Ud2:
      VIC_TRY(inject(6));  // #UD is a fault: RIP stays on the instruction
      break;
    case AssistKind::Clac:
    case AssistKind::Stac:
      regs.rflags = a.kind == AssistKind::Stac ? regs.rflags | kRflagsAc : regs.rflags & ~kRflagsAc;
      regs.rip += a.length;
      VIC_TRY(vcpu.set_regs(regs));
      break;
    case AssistKind::SkipX87:
      regs.rip += a.length;
      VIC_TRY(vcpu.set_regs(regs));
      break;
    case AssistKind::SkipLdmxcsr: {
      // Do what the CPU would: #UD without SSE enabled, #NM when the FPU is
      // lazily off, #GP for reserved bits; otherwise load MXCSR.
      if (!(sregs.cr4 & kCr4Osfxsr) || (sregs.cr0 & kCr0Em)) {
        VIC_TRY(inject(6));
        break;
      }
      if (sregs.cr0 & kCr0Ts) {
        VIC_TRY(inject(7));
        break;
      }
      uint64_t addr = effective_address(a.mem, regs, sregs, regs.rip + a.length);
      uint8_t raw[4];
      auto n = read_gva(mem, sregs.cr3, addr, raw);
      if (!n || *n != 4) return false;  // unmapped operand: let the exit be reported
      uint32_t value = raw[0] | (raw[1] << 8) | (raw[2] << 16) | (static_cast<uint32_t>(raw[3]) << 24);
      if (value & kMxcsrReserved) {
        VIC_TRY(inject(13, true));
        break;
      }
      VIC_ASSIGN(kvm_abi::Xsave xs, vcpu.get_xsave());
      xs.region[kXsaveMxcsrWord] = value;
      VIC_TRY(vcpu.set_xsave(xs));
      regs.rip += a.length;
      VIC_TRY(vcpu.set_regs(regs));
      break;
    }
    case AssistKind::None:
    case AssistKind::kCount:
      return false;
  }
  counts_[static_cast<size_t>(a.kind)].fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace vicvmm
