#include "vmm/machine.h"

#include <pthread.h>
#include <signal.h>

#include <thread>

#include "guest/abi/vicvmm_abi.h"
#include "vmm/devices/i8042.h"
#include "vmm/parked_threads.h"
#include "vmm/seccomp/seccomp.h"

namespace vicvmm {

namespace {

// Where KVM's x86 internals (TSS, identity map) live: just below the BIOS
// area at the top of 4 GiB, clear of RAM and of every device we map.
constexpr uint64_t kTssGpa = 0xfffb'd000;
constexpr uint32_t kSerialIrq = 4;
constexpr uint16_t kCom1 = 0x3f8;
constexpr uint64_t kRflagsIf = 1ull << 9;

// A signal that only interrupts KVM_RUN (the handler does nothing). Used to
// stop vCPU threads and to let the watchdog look at a halted vCPU.
int kick_signal() { return SIGRTMIN + 1; }
void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kick_signal(), &sa, nullptr);
  });
}
void unblock_kick_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace

namespace {
uint64_t clock_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

uint64_t thread_cpu_ns() { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }
uint64_t process_cpu_ns() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

uint64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }
uint64_t realtime_ns() { return clock_ns(CLOCK_REALTIME); }

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::None: return "running";
    case StopReason::CommandExited: return "command exited";
    case StopReason::AgentError: return "guest agent error";
    case StopReason::TemplateReady: return "template ready";
    case StopReason::GuestReset: return "guest reset";
    case StopReason::GuestShutdown: return "guest shutdown";
    case StopReason::TripleFault: return "triple fault";
    case StopReason::KernelPanic: return "kernel panic";
    case StopReason::HaltedNoInterrupts: return "halted with interrupts disabled";
    case StopReason::EmulationFailure: return "emulation failure";
    case StopReason::EntryFailure: return "VM entry failure";
    case StopReason::UnhandledExit: return "unhandled VM exit";
    case StopReason::Timeout: return "timeout";
    case StopReason::Stopped: return "stopped";
    case StopReason::HostError: return "host error";
  }
  return "?";
}

Machine::Machine(const MachineConfig& cfg, HostKind host) : cfg_(cfg), quirks_(host) {}

Machine::~Machine() {
  request_stop({StopReason::Stopped, 0, "machine destroyed"});
  if (serial_) serial_->flush();
}

Result<std::unique_ptr<Machine>> Machine::create(const Kvm& kvm, const MachineConfig& cfg) {
  if (cfg.vcpus == 0 || cfg.vcpus > 254) return err("machine: {} vCPUs requested (1..254 supported)", cfg.vcpus);
  std::unique_ptr<Machine> m(new Machine(cfg, cfg.host.value_or(detect_host_kind())));
  m->stats_.t_created = monotonic_ns();
  VIC_TRY(m->setup(kvm));
  return m;
}

Result<> Machine::setup(const Kvm& kvm) {
  VIC_TRY(require_base_capabilities(kvm));
  VIC_ASSIGN(mem_, GuestMemory::create(cfg_.mem_size, cfg_.backing, cfg_.backing_fd));
  VIC_ASSIGN(vm_, Vm::create(kvm));
  VIC_TRY(vm_.set_tss_and_identity_map(kTssGpa));
  // Memslots before the irqchip (HOST.md: the other order stalls ~7 ms).
  uint32_t slot = 0;
  uint32_t flags = cfg_.dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0;
  for (const auto& r : mem_.regions()) VIC_TRY(vm_.set_memory_region(slot++, r.gpa, r.size, r.host, flags));
  if (cfg_.irqchip) {
    VIC_TRY(vm_.create_irqchip());
    if (cfg_.pit) VIC_TRY(vm_.create_pit());
  }
  VIC_ASSIGN(cpuid_, kvm.supported_cpuid());
  for (uint32_t i = 0; i < cfg_.vcpus; ++i) {
    VIC_ASSIGN(Vcpu v, vm_.create_vcpu(kvm, i));
    vcpus_.push_back(std::move(v));
  }

  // Devices. Each lambda captures `this`; the Machine outlives its devices.
  serial_ = std::make_shared<Serial>(
      cfg_.console_fd, [this] { pulse_irq(kSerialIrq); },
      [this](const std::string& line) { on_console_line(line); }, cfg_.console_unbuffered, cfg_.console_limit);
  VIC_TRY(io_bus_.insert(serial_, kCom1, 8));
  auto i8042 = std::make_shared<I8042>([this] { request_stop({StopReason::GuestReset, 0, "i8042 reset"}); });
  VIC_TRY(io_bus_.insert(i8042, I8042::kDataPort, 5));
  doorbell_ = std::make_shared<Doorbell>([this](uint32_t ev, uint32_t arg) { on_doorbell(ev, arg); });
  VIC_TRY(mmio_bus_.insert(doorbell_, VIC_DOORBELL_MMIO_GPA, 0x1000));
  VIC_TRY(io_bus_.insert(doorbell_, VIC_DOORBELL_PORT, 4));
  return {};
}

Result<virtio::MmioSlot*> Machine::add_virtio(std::shared_ptr<virtio::Device> device) {
  EventLoop* loop = cfg_.irqchip ? &EventLoop::shared() : nullptr;
  VIC_ASSIGN(auto slot, virtio::MmioSlot::attach(vm_, mmio_bus_, mem_, loop, std::move(device),
                                                 static_cast<uint32_t>(virtio_.size())));
  virtio_.push_back(std::move(slot));
  return virtio_.back().get();
}

std::vector<std::string> Machine::virtio_cmdline() const {
  std::vector<std::string> words;
  for (const auto& s : virtio_) words.push_back(s->cmdline_word());
  return words;
}

void Machine::pulse_irq(uint32_t irq) {
  if (!cfg_.irqchip) return;
  // An ISA edge: raise then lower. Failures are counted, not fatal: a lost
  // serial interrupt only slows the console.
  (void)vm_.irq_line(irq, true);
  (void)vm_.irq_line(irq, false);
}

void Machine::on_doorbell(uint32_t event, uint32_t arg) {
  switch (event) {
    case VIC_EV_READY:
      stats_.t_agent_ready = monotonic_ns();
      break;
    case VIC_EV_EXIT: {
      int status = (arg & VIC_EXIT_SIGNALED) ? 128 + static_cast<int>(arg & 0x7f) : static_cast<int>(arg & 0xff);
      request_stop({StopReason::CommandExited, status,
                    (arg & VIC_EXIT_SIGNALED) ? fmt::format("killed by signal {}", arg & 0x7f)
                                              : fmt::format("exit status {}", status)});
      break;
    }
    case VIC_EV_ERROR:
      request_stop({StopReason::AgentError, 1, fmt::format("vic-init failed (errno {})", arg)});
      break;
    case VIC_EV_TEMPLATE:
      request_stop({StopReason::TemplateReady, 0, "agent parked as template"});
      break;
    case VIC_EV_PING:
      stats_.doorbell_pings.fetch_add(1, std::memory_order_relaxed);
      break;
    case VIC_EV_PANIC: {
      std::string detail;
      {
        std::lock_guard lock(stop_mu_);
        detail = panic_line_.empty() ? "the guest kernel panicked" : panic_line_;
      }
      request_stop({StopReason::KernelPanic, 1, detail});
      break;
    }
    default:
      break;  // unknown events from a guest are ignored, never trusted
  }
}

void Machine::on_console_line(const std::string& line) {
  // Only the detail of a panic comes from the console: the detection is the
  // kernel's own VIC_EV_PANIC, since any program can print this text.
  auto pos = line.find("Kernel panic - not syncing");
  if (pos != std::string::npos) {
    std::lock_guard lock(stop_mu_);
    panic_line_ = line.substr(pos);
  }
  if (cfg_.on_console_line) cfg_.on_console_line(line);
}

void Machine::clear_stop() {
  std::lock_guard lock(stop_mu_);
  stop_ = StopInfo{};
  panic_line_.clear();
  stopping_ = false;
  for (auto& v : vcpus_) v.run_state()->immediate_exit = 0;
  stats_.t_first_run = 0;
  stats_.t_agent_ready = 0;
  stats_.t_stopped = 0;
}

void Machine::request_stop(StopInfo info) {
  {
    std::lock_guard lock(stop_mu_);
    if (stopping_.load()) return;
    stop_ = std::move(info);
    stopping_ = true;
    stats_.t_stopped = monotonic_ns();
    kick_all();  // under the lock: run() changes threads_ under it too
  }
  stop_cv_.notify_all();
}

void Machine::kick_all() {
  for (auto& v : vcpus_) v.run_state()->immediate_exit = 1;
  // threads_ is only filled while run() is active; after it returns there is
  // nothing to interrupt.
  for (pthread_t t : threads_) pthread_kill(t, kick_signal());
}

Result<StopInfo> Machine::run() {
  if (stopping_.load()) return err("machine: already stopped ({})", stop_reason_name(stop_.reason));
  install_kick_handler();

  // Every vCPU runs on a thread of its own, confined to the vCPU
  // allow-list; the caller's thread (an embedder's, or the CLI's main
  // thread) is never confined: it is the watchdog. The threads are the
  // process's parked vCPU threads, started and confined once.
  std::vector<ParkedThreads::Job> vcpu_jobs;
  vcpu_jobs.reserve(vcpus_.size());
  {
    std::lock_guard lock(stop_mu_);
    for (size_t i = 0; i < vcpus_.size(); ++i) {
      auto job = ParkedThreads::vcpus().run([this, i] {
        unblock_kick_signal();
        vcpu_loop(i);
      });
      if (!job) {
        stop_ = {StopReason::HostError, 1, job.error().message};
        stopping_ = true;
        kick_all();
        break;
      }
      vcpu_jobs.push_back(std::move(*job));
      threads_.push_back(vcpu_jobs.back().native_handle());
    }
  }

  // The watchdog enforces the timeout and, with an in-kernel irqchip (where
  // HLT never reaches us), looks at halted vCPUs once a second. Every vCPU
  // loop ends with a stop request (a guest event, an error, or ours).
  {
    auto start = std::chrono::steady_clock::now();
    std::unique_lock lock(stop_mu_);
    auto deadline = start + cfg_.timeout;
    while (!stopping_.load()) {
      auto wait = std::chrono::steady_clock::duration(std::chrono::seconds(1));
      if (cfg_.timeout.count() > 0) wait = std::min(wait, deadline - std::chrono::steady_clock::now());
      stop_cv_.wait_for(lock, std::max(wait, std::chrono::steady_clock::duration::zero()));
      if (stopping_.load()) break;
      if (cfg_.timeout.count() > 0 && std::chrono::steady_clock::now() - start >= cfg_.timeout) {
        lock.unlock();
        request_stop({StopReason::Timeout, 1, fmt::format("no result after {} ms", cfg_.timeout.count())});
        lock.lock();
        break;
      }
      if (cfg_.irqchip)
        for (pthread_t t : threads_) pthread_kill(t, kick_signal());
    }
  }
  for (auto& job : vcpu_jobs) job.join();
  {
    std::lock_guard lock(stop_mu_);
    threads_.clear();
  }
  serial_->flush();
  // What the guest queued just before it stopped (its last output, whose
  // kick may still wait in an eventfd) is taken now.
  for (auto& slot : virtio_) slot->transport().poll();
  return stop_;
}

void Machine::vcpu_loop(size_t index) {
  Vcpu& vcpu = vcpus_[index];
  while (!stopping_.load(std::memory_order_acquire)) {
    if (stats_.t_first_run.load(std::memory_order_relaxed) == 0) stats_.t_first_run = monotonic_ns();
    auto ran = vcpu.run();
    if (!ran) {
      request_stop({StopReason::HostError, 1, ran.error().message});
      return;
    }
    if (!*ran) {  // interrupted by a kick
      stats_.interrupted.fetch_add(1, std::memory_order_relaxed);
      vcpu.run_state()->immediate_exit = 0;
      if (!stopping_.load()) check_halted(vcpu);
      continue;
    }
    stats_.exits.fetch_add(1, std::memory_order_relaxed);
    if (!handle_exit(vcpu)) return;
  }
}

void Machine::check_halted(Vcpu& vcpu) {
  auto mp = vcpu.get_mp_state();
  if (!mp || mp->mp_state != KVM_MP_STATE_HALTED) return;
  auto regs = vcpu.get_regs();
  if (regs && !(regs->rflags & kRflagsIf))
    request_stop({StopReason::HaltedNoInterrupts, 1,
                  fmt::format("vCPU {} halted with interrupts disabled at rip {:#x}", vcpu.id(), regs->rip)});
}

bool Machine::handle_exit(Vcpu& vcpu) {
  kvm_run* run = vcpu.run_state();
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      stats_.io_exits.fetch_add(1, std::memory_order_relaxed);
      auto* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      // String I/O (rep outsb) arrives as `count` back-to-back accesses.
      for (uint32_t i = 0; i < run->io.count; ++i, data += run->io.size) {
        std::span<uint8_t> bytes(data, run->io.size);
        bool claimed = run->io.direction == KVM_EXIT_IO_OUT ? io_bus_.write(run->io.port, bytes)
                                                            : io_bus_.read(run->io.port, bytes);
        if (!claimed) stats_.io_unclaimed.fetch_add(1, std::memory_order_relaxed);
      }
      return true;
    }
    case KVM_EXIT_MMIO: {
      stats_.mmio_exits.fetch_add(1, std::memory_order_relaxed);
      uint32_t len = std::min<uint32_t>(run->mmio.len, sizeof(run->mmio.data));
      std::span<uint8_t> bytes(run->mmio.data, len);
      bool claimed = run->mmio.is_write ? mmio_bus_.write(run->mmio.phys_addr, bytes)
                                        : mmio_bus_.read(run->mmio.phys_addr, bytes);
      if (!claimed) stats_.mmio_unclaimed.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    case KVM_EXIT_HLT: {
      // Only without the in-kernel irqchip. With IF clear nothing can wake
      // the vCPU: that is how tiny guests (and crashed kernels) stop.
      stats_.hlt_exits.fetch_add(1, std::memory_order_relaxed);
      auto regs = vcpu.get_regs();
      if (!regs) {
        request_stop({StopReason::HostError, 1, regs.error().message});
        return false;
      }
      if (!(regs->rflags & kRflagsIf)) {
        request_stop({StopReason::HaltedNoInterrupts, 1,
                      fmt::format("vCPU {} halted with interrupts disabled at rip {:#x}", vcpu.id(), regs->rip)});
        return false;
      }
      // Without an in-kernel irqchip no device of ours raises interrupts,
      // so nothing will ever wake this vCPU either.
      request_stop({StopReason::HaltedNoInterrupts, 1,
                    fmt::format("vCPU {} halted at rip {:#x} with no interrupt source (no irqchip)", vcpu.id(),
                                regs->rip)});
      return false;
    }
    case KVM_EXIT_SHUTDOWN:
      request_stop({StopReason::TripleFault, 1, fmt::format("vCPU {} triple fault", vcpu.id())});
      return false;
    case KVM_EXIT_SYSTEM_EVENT: {
      auto type = run->system_event.type;
      if (type == KVM_SYSTEM_EVENT_RESET)
        request_stop({StopReason::GuestReset, 0, "system reset"});
      else if (type == KVM_SYSTEM_EVENT_SHUTDOWN)
        request_stop({StopReason::GuestShutdown, 0, "system shutdown"});
      else
        request_stop({StopReason::KernelPanic, 1, fmt::format("system event {} (crash)", type)});
      return false;
    }
    case KVM_EXIT_INTERNAL_ERROR: {
      if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
        auto handled = quirks_.handle_emulation_failure(vcpu, mem_);
        if (handled && *handled) return true;
      }
      auto regs = vcpu.get_regs();
      request_stop({StopReason::EmulationFailure, 1,
                    fmt::format("vCPU {}: KVM internal error suberror {} at rip {:#x}", vcpu.id(),
                                run->internal.suberror, regs ? regs->rip : 0)});
      return false;
    }
    case KVM_EXIT_FAIL_ENTRY:
      request_stop({StopReason::EntryFailure, 1,
                    fmt::format("vCPU {}: VM entry failed, reason {:#x}", vcpu.id(),
                                run->fail_entry.hardware_entry_failure_reason)});
      return false;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return true;
    default:
      request_stop({StopReason::UnhandledExit, 1,
                    fmt::format("vCPU {}: unhandled exit reason {}", vcpu.id(), run->exit_reason)});
      return false;
  }
}

std::string Machine::stats_report() const {
  auto ms = [](uint64_t from, uint64_t to) { return (from && to) ? (to - from) / 1e6 : 0.0; };
  std::string s;
  s += fmt::format("host: {}\n", host_kind_name(quirks_.kind()));
  s += fmt::format("exits: {} total, {} port I/O ({} unclaimed), {} MMIO ({} unclaimed), {} HLT, {} kicks\n",
                   stats_.exits.load(), stats_.io_exits.load(), stats_.io_unclaimed.load(), stats_.mmio_exits.load(),
                   stats_.mmio_unclaimed.load(), stats_.hlt_exits.load(), stats_.interrupted.load());
  s += fmt::format("emulation assists: {}", quirks_.total_assists());
  for (size_t k = 1; k < static_cast<size_t>(AssistKind::kCount); ++k) {
    auto kind = static_cast<AssistKind>(k);
    s += fmt::format(" {}={}", assist_name(kind), quirks_.count(kind));
  }
  s += fmt::format("\nconsole bytes: {} ({} dropped past the limit), doorbell writes: {} ({} pings)\n",
                   serial_ ? serial_->bytes_out() : 0, serial_ ? serial_->bytes_dropped() : 0,
                   doorbell_ ? doorbell_->writes() : 0, stats_.doorbell_pings.load());
  for (const auto& slot : virtio_) s += slot->transport().stats_line() + "\n";
  if (!virtio_.empty())
    s += fmt::format("I/O thread CPU (all VMs of this process): {:.3f} ms\n", EventLoop::shared().thread_cpu_ns() / 1e6);
  s += fmt::format("timeline (ms from machine create): first KVM_RUN {:.2f}, agent ready {:.2f}, stop {:.2f}\n",
                   ms(stats_.t_created, stats_.t_first_run), ms(stats_.t_created, stats_.t_agent_ready),
                   ms(stats_.t_created, stats_.t_stopped));
  return s;
}

}  // namespace vicvmm
