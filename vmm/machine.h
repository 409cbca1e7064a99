// A Machine is one running microVM: a KVM VM with its guest memory, vCPUs,
// buses and devices, and the loop that runs the vCPUs until something stops
// it. It knows nothing about Linux; vmm/linux_boot.h loads a kernel into it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/devices/bus.h"
#include "vmm/devices/doorbell.h"
#include "vmm/devices/serial.h"
#include "vmm/host/nested_pvm.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/mmio_slot.h"

namespace vicvmm {

struct MachineConfig {
  uint64_t mem_size = 128ull << 20;
  unsigned vcpus = 1;
  Backing backing = Backing::Anonymous;
  int backing_fd = -1;            // for Backing::PrivateFile (not owned)
  int console_fd = 1;             // where the UART's output goes; -1 discards it
  bool console_unbuffered = false;  // interactive: write every byte at once
  uint64_t console_limit = 0;     // bytes written to console_fd before the rest is dropped; 0: no cap
  bool irqchip = true;            // false: HLT exits to us (tiny test guests)
  // The in-kernel i8254 PIT (with the irqchip). Linux needs it to boot; a
  // clone of a booted guest runs on the LAPIC timer and skips it, which
  // saves a kernel thread per VM (KVM starts one for the PIT).
  bool pit = true;
  std::optional<HostKind> host;   // default: detect_host_kind()
  std::chrono::milliseconds timeout{0};  // 0: run until the guest stops
  bool dirty_log = false;         // KVM dirty-page logging on every memslot (clones)
  // Sees each complete console line (after panic detection); e.g. to prefix
  // clone output. Runs on a vCPU thread.
  std::function<void(const std::string&)> on_console_line;
};

enum class StopReason {
  None,
  CommandExited,      // the agent reported the command's exit status
  AgentError,         // the agent could not run the command
  TemplateReady,      // the agent parked itself for the clone engine
  GuestReset,         // i8042 reset or KVM system event reset (Linux `reboot`)
  GuestShutdown,      // KVM system event shutdown
  TripleFault,        // KVM_EXIT_SHUTDOWN
  KernelPanic,        // the guest kernel rang VIC_EV_PANIC from panic()
  HaltedNoInterrupts, // HLT with RFLAGS.IF clear: nothing can wake it
  EmulationFailure,   // KVM could not emulate an instruction we cannot help with
  EntryFailure,       // KVM_EXIT_FAIL_ENTRY
  UnhandledExit,      // an exit reason vicvmm does not implement
  Timeout,            // MachineConfig::timeout passed
  Stopped,            // request_stop() from the host side
  HostError,          // a KVM ioctl failed
};

const char* stop_reason_name(StopReason r);

struct StopInfo {
  StopReason reason = StopReason::None;
  int exit_status = 0;   // for CommandExited: 0..255, or 128+signal
  std::string detail;    // human-readable cause, e.g. the panic line
};

struct MachineStats {
  std::atomic<uint64_t> exits{0}, io_exits{0}, mmio_exits{0}, hlt_exits{0}, interrupted{0};
  std::atomic<uint64_t> io_unclaimed{0}, mmio_unclaimed{0};
  std::atomic<uint64_t> doorbell_pings{0};
  // Nanoseconds on CLOCK_MONOTONIC; 0 until it happens.
  std::atomic<uint64_t> t_created{0}, t_first_run{0}, t_agent_ready{0}, t_stopped{0};
};

uint64_t monotonic_ns();
// CPU time used so far (ns) by the calling thread, and by the whole process.
uint64_t thread_cpu_ns();
uint64_t process_cpu_ns();
// CLOCK_REALTIME in ns: wall-clock stamps (records, a guest's clock).
uint64_t realtime_ns();

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> create(const Kvm& kvm, const MachineConfig& cfg);
  ~Machine();

  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  GuestMemory& memory() { return mem_; }
  const GuestMemory& memory() const { return mem_; }
  Vm& vm() { return vm_; }
  Vcpu& vcpu(size_t i) { return vcpus_[i]; }
  size_t vcpu_count() const { return vcpus_.size(); }
  Bus& io_bus() { return io_bus_; }
  Bus& mmio_bus() { return mmio_bus_; }
  Serial& serial() { return *serial_; }
  const HostQuirks& quirks() const { return quirks_; }
  const MachineStats& stats() const { return stats_; }
  const MachineConfig& config() const { return cfg_; }
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return cpuid_; }

  // Plugs a virtio device into the next virtio-mmio slot. Kicks are served
  // by the process's I/O thread (EventLoop::shared()) when the machine has
  // an in-kernel irqchip. Call before the guest boots.
  Result<virtio::MmioSlot*> add_virtio(std::shared_ptr<virtio::Device> device);
  const std::vector<std::unique_ptr<virtio::MmioSlot>>& virtio_slots() const { return virtio_; }
  // `virtio_mmio.device=` words for the kernel command line, one per device.
  std::vector<std::string> virtio_cmdline() const;

  // Runs every vCPU on a thread of its own (confined by seccomp; the
  // calling thread waits, enforcing the timeout, and is never confined)
  // until the guest or request_stop() stops the machine. Run it once.
  Result<StopInfo> run();

  // Thread-safe; the first stop wins.
  void request_stop(StopInfo info);

  // After a stop, makes the machine runnable again (clone reset): clears the
  // stop record and the per-run timestamps.
  void clear_stop();

  // Memslot index of each memory region, for dirty logs.
  uint32_t slot_of_region(size_t region) const { return static_cast<uint32_t>(region); }

  // Multi-line human summary of the counters (for --stats).
  std::string stats_report() const;

 private:
  Machine(const MachineConfig& cfg, HostKind host);
  Result<> setup(const Kvm& kvm);
  void vcpu_loop(size_t index);
  // Handles the exit in kvm_run; false when the machine must stop.
  bool handle_exit(Vcpu& vcpu);
  void check_halted(Vcpu& vcpu);
  void on_doorbell(uint32_t event, uint32_t arg);
  void on_console_line(const std::string& line);
  void pulse_irq(uint32_t irq);
  void kick_all();

  MachineConfig cfg_;
  HostQuirks quirks_;
  GuestMemory mem_;
  Vm vm_;
  std::vector<Vcpu> vcpus_;
  std::vector<pthread_t> threads_;
  std::vector<kvm_cpuid_entry2> cpuid_;
  Bus io_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};
  std::shared_ptr<Serial> serial_;
  std::shared_ptr<Doorbell> doorbell_;
  MachineStats stats_;
  // After mem_ and vm_: slots unregister from the VM and the I/O thread
  // before the memory their queues point into goes away.
  std::vector<std::unique_ptr<virtio::MmioSlot>> virtio_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<bool> stopping_{false};
  StopInfo stop_;
  std::string panic_line_;  // the last "Kernel panic" console line: the detail of VIC_EV_PANIC
};

}  // namespace vicvmm
