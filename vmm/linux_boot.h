// Puts an x86-64 Linux kernel (ELF vmlinux or bzImage) and its initramfs
// into a Machine and points vCPU 0 at the kernel's 64-bit entry, with no
// firmware in between. Also the smaller piece the test guests use: entering
// long mode at an arbitrary entry point.
#pragma once

#include <span>
#include <string>

#include "vmm/agent/mailbox.h"
#include "vmm/machine.h"

namespace vicvmm {

// Kernel words every vicvmm guest gets (before the host's and the user's).
// no-kvmapf: a clone restoring MSR_KVM_ASYNC_PF_EN makes KVM inject a
// "wake all" interrupt at once (~1800 guest-kernel instructions on resume);
// async page faults buy nothing for short-lived microVMs.
inline constexpr const char* kDefaultKernelCmdline =
    "console=ttyS0 8250.nr_uarts=1 reboot=k panic=1 nomodule quiet random.trust_cpu=on no-kvmapf";

struct LinuxBootSpec {
  std::span<const uint8_t> kernel;
  std::span<const uint8_t> initrd;  // empty: none
  std::string extra_cmdline;        // user words, appended last (may override defaults)
  AgentRequest agent;               // written to the mailbox page
};

// Loads everything and sets every vCPU's boot state. Returns the kernel
// command line it used.
Result<std::string> boot_linux(Machine& m, const LinuxBootSpec& spec);

// Identity page tables, GDT, long-mode segment state, boot MSRs and CPUID on
// every vCPU; vCPU 0 starts at `entry` with RSI = `rsi` (boot_params for Linux).
Result<> enter_long_mode(Machine& m, uint64_t entry, uint64_t rsi);

}  // namespace vicvmm
