#include "clone/template.h"

#include <fcntl.h>
#include <sys/mman.h>

#include "clone/snapshot.h"
#include "vmm/boot/x86_state.h"
#include "vmm/linux_boot.h"
#include "vmm/virtio/console.h"

namespace vicvmm {

namespace {
// Nothing may change a template's memory while clones map it: no writes
// (F_SEAL_WRITE also forbids new shared writable mappings), no resizing.
constexpr int kTemplateSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
}  // namespace

Result<std::shared_ptr<const Template>> Template::boot(const Kvm& kvm, const TemplateSpec& spec) {
  MachineConfig cfg;
  cfg.mem_size = spec.mem_size;
  cfg.backing = Backing::SharedMemfd;
  cfg.console_fd = spec.console_fd;
  cfg.console_limit = spec.console_limit;
  cfg.timeout = spec.timeout;
  VIC_ASSIGN(auto machine, Machine::create(kvm, cfg));
  std::vector<virtio::DeviceSpec> devices = spec.devices;
  for (auto& d : devices) {
    if (d.device_id == virtio::kDeviceBlock && !d.read_only)
      return err("template: disk {} is read-write; every clone would share it (add ,ro)", d.path);
    VIC_ASSIGN(auto dev, virtio::open_device(d));
    // Templates (and so clones) have no stdin: the guest reads EOF, and
    // learns it before the capture, not at every clone's start.
    if (d.device_id == virtio::kDeviceConsole) std::static_pointer_cast<virtio::Console>(dev)->close_input();
    VIC_TRY(machine->add_virtio(std::move(dev)));
  }

  LinuxBootSpec boot;
  boot.kernel = spec.kernel;
  boot.initrd = spec.initrd;
  boot.extra_cmdline = spec.extra_cmdline;
  boot.agent.flags = VIC_MB_TEMPLATE | VIC_MB_QUIET | spec.agent_flags;
  for (const auto& d : devices)
    if (d.device_id == virtio::kDeviceConsole) boot.agent.flags |= VIC_MB_STDIO_PORTS;
    else if (d.device_id == virtio::kDeviceNet) boot.agent.flags |= VIC_MB_NET;
  boot.agent.argv = {"/bin/true"};  // replaced by each clone's personality
  VIC_TRY(boot_linux(*machine, boot));

  VIC_ASSIGN(StopInfo stop, machine->run());
  if (stop.reason != StopReason::TemplateReady)
    return err("template: guest stopped before the agent was ready: {}: {}", stop_reason_name(stop.reason),
               stop.detail);
  return capture(kvm, std::move(machine), std::move(devices));
}

Result<std::shared_ptr<const Template>> Template::capture(const Kvm& kvm, std::unique_ptr<Machine> machine,
                                                          std::vector<virtio::DeviceSpec> devices) {
  if (!machine) return err("template: no machine");
  if (machine->memory().backing() != Backing::SharedMemfd)
    return err("template: the machine's memory must be a shared memfd (it is {})",
               backing_name(machine->memory().backing()));
  if (machine->vcpu_count() != 1) return err("template: {} vCPUs; templates have exactly one", machine->vcpu_count());
  if (!machine->config().irqchip)
    return err("template: the machine has no in-kernel irqchip (clones always have one, so templates need it too)");

  const auto& slots = machine->virtio_slots();
  if (devices.size() != slots.size())
    return err("template: {} device descriptions for {} virtio slots", devices.size(), slots.size());

  auto t = std::make_shared<Template>();
  // Devices first: finishing their requests may raise interrupts, which
  // the irqchip and vCPU state saved below must include.
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i]->transport().device().device_id() != devices[i].device_id)
      return err("template: virtio slot {} holds a {} device, described as {}", i, slots[i]->transport().name(),
                 virtio::device_kind_name(devices[i].device_id));
    slots[i]->stop_io();
    DeviceRecord rec{devices[i], slots[i]->transport().quiesce_and_save()};
    // An irqfd reaches a pin through a kernel work item, maybe not yet
    // run: drive the line ourselves so the irqchip state saved below has
    // any pending interrupt (at worst the guest sees one extra, spurious).
    if (rec.transport.regs.interrupt_status) {
      VIC_TRY(machine->vm().irq_line(slots[i]->irq(), true));
      VIC_TRY(machine->vm().irq_line(slots[i]->irq(), false));
    }
    t->state_.devices.push_back(std::move(rec));
  }
  Vcpu& vcpu = machine->vcpu(0);
  // The doorbell store is still in flight inside KVM; finish it so the
  // saved RIP is past it and no clone repeats it.
  VIC_TRY(complete_pending_io(vcpu));
  VIC_ASSIGN(auto msr_indices, saved_msr_indices(kvm));
  VIC_ASSIGN(t->state_.vcpu, save_vcpu(vcpu, msr_indices));
  VIC_ASSIGN(t->state_.vm, save_vm(machine->vm()));
  t->state_.serial = machine->serial().save();
  t->state_.cpuid = boot::patch_cpuid(machine->supported_cpuid(), 0, 1);
  t->state_.host = machine->quirks().kind();
  t->state_.mem_size = machine->memory().size();

  UniqueFd memfd(fcntl(machine->memory().memfd(), F_DUPFD_CLOEXEC, 0));
  if (!memfd) return sys_err("template: duplicating the memory fd");
  machine.reset();  // its shared writable mapping must go before sealing

  if (fcntl(memfd.get(), F_ADD_SEALS, kTemplateSeals) != 0) return sys_err("template: sealing guest memory");
  t->memory_ = std::move(memfd);
  return std::shared_ptr<const Template>(std::move(t));
}

Result<std::shared_ptr<const Template>> Template::load(const std::string& dir, HostKind host, bool verify_memory,
                                                      SnapshotMemory how) {
  VIC_ASSIGN(LoadedSnapshot snap, read_snapshot(dir, host, verify_memory, how));
  auto t = std::make_shared<Template>();
  t->state_ = std::move(snap.state);
  t->memory_ = std::move(snap.memory_fd);
  return std::shared_ptr<const Template>(std::move(t));
}

Result<> Template::save(const std::string& dir, bool replace) const {
  void* p = mmap(nullptr, state_.mem_size, PROT_READ, MAP_SHARED, memory_.get(), 0);
  if (p == MAP_FAILED) return sys_err("template: mapping memory to save it");
  Mapping map(p, state_.mem_size);
  return write_snapshot(dir, state_, {map.bytes(), map.size()}, replace);
}

}  // namespace vicvmm
