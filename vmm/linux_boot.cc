#include "vmm/linux_boot.h"

#include "vmm/boot/bootparams.h"
#include "vmm/boot/cmdline.h"
#include "vmm/boot/elf_loader.h"
#include "vmm/boot/gdt.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/mptable.h"
#include "vmm/boot/page_tables.h"
#include "vmm/boot/x86_state.h"

namespace vicvmm {

Result<> enter_long_mode(Machine& m, uint64_t entry, uint64_t rsi) {
  GuestMemory& mem = m.memory();
  VIC_ASSIGN(uint64_t cr3, boot::write_identity_page_tables(mem));
  VIC_TRY(boot::write_gdt(mem));
  const auto msrs = boot::boot_msrs();
  for (size_t i = 0; i < m.vcpu_count(); ++i) {
    Vcpu& v = m.vcpu(i);
    VIC_TRY(v.set_cpuid(boot::patch_cpuid(m.supported_cpuid(), v.id(), static_cast<unsigned>(m.vcpu_count()))));
    VIC_TRY(v.set_msrs(msrs));
    VIC_ASSIGN(kvm_sregs sregs, v.get_sregs());
    boot::long_mode_sregs(sregs, cr3);
    VIC_TRY(v.set_sregs(sregs));
    kvm_fpu fpu{};
    fpu.fcw = 0x37f;     // x87 default control word
    fpu.mxcsr = 0x1f80;  // SSE default: all exceptions masked
    VIC_TRY(v.set_fpu(fpu));
    // Application processors wait for INIT/SIPI from the BSP (real KVM only;
    // HOST.md: a second vCPU never starts on the nested host).
    if (i == 0) {
      kvm_regs regs{};
      boot::boot_regs(regs, entry, rsi);
      VIC_TRY(v.set_regs(regs));
    }
  }
  return {};
}

Result<std::string> boot_linux(Machine& m, const LinuxBootSpec& spec) {
  GuestMemory& mem = m.memory();

  boot::Cmdline cmdline;
  VIC_TRY(cmdline.append(kDefaultKernelCmdline));
  for (const auto& w : m.quirks().kernel_cmdline_words()) VIC_TRY(cmdline.append(w));
  for (const auto& w : m.virtio_cmdline()) VIC_TRY(cmdline.append(w));
  if (!spec.extra_cmdline.empty()) {
    auto r = cmdline.append(spec.extra_cmdline);
    if (!r) return with_context(r.error(), "--cmdline");
  }

  VIC_ASSIGN(auto kernel, boot::load_kernel(mem, spec.kernel));

  boot::BootConfig cfg;
  cfg.cmdline = cmdline.render();
  cfg.setup_header = kernel.setup_header;
  cfg.ram = mem.regions();
  if (!spec.initrd.empty()) {
    VIC_ASSIGN(auto placed, boot::load_initrd(mem, spec.initrd, kernel.load_end, kernel.initrd_addr_max));
    cfg.initrd_gpa = placed.gpa;
    cfg.initrd_size = placed.size;
  }
  VIC_TRY(boot::write_boot_params(mem, cfg));
  VIC_TRY(boot::write_mptable(mem, static_cast<unsigned>(m.vcpu_count())));

  VIC_ASSIGN(Mailbox mb, build_mailbox(spec.agent));
  VIC_TRY(write_mailbox(mem, mb));

  VIC_TRY(enter_long_mode(m, kernel.entry_gpa, boot::kBootParamsGpa));
  return cfg.cmdline;
}

}  // namespace vicvmm
