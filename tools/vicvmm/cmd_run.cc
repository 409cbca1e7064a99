// `vicvmm run`: boot the guest, run one command in it, exit with its status.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstdio>
#include <thread>

#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/options.h"
#include "vmm/linux_boot.h"
#include "vmm/mapped_file.h"
#include "vmm/virtio/block.h"
#include "vmm/virtio/rng.h"

namespace vicvmm::cli {

namespace {

int fail(const Error& e) {
  fmt::print(stderr, "vicvmm: error: {}\n", e.message);
  return kExitVmmError;
}

// Raw terminal for the guest's console while it runs; restored on scope exit.
class RawTerminal {
 public:
  RawTerminal() {
    if (tcgetattr(0, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(0, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

// Forwards keystrokes to the guest UART until told to stop.
class StdinPump {
 public:
  explicit StdinPump(Serial& serial) : thread_([this, &serial] { pump(serial); }) {}
  ~StdinPump() {
    stop_ = true;
    thread_.join();
  }

 private:
  void pump(Serial& serial) {
    char buf[256];
    while (!stop_) {
      pollfd p{0, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) return;
      serial.queue_input({buf, static_cast<size_t>(n)});
    }
  }
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

int cmd_run(const RunOptions& o, uint64_t process_start_ns) {
  auto mem_size = parse_guest_memory(o.mem);
  if (!mem_size) return fail(mem_size.error());
  if (o.vcpus == 0 || o.vcpus > 254) return fail(Error{fmt::format("--vcpus {}: must be 1..254", o.vcpus)});

  // Disks open (and lock) before anything else, so a bad one fails fast.
  std::vector<std::shared_ptr<virtio::Block>> disks;
  for (const auto& text : o.disks) {
    auto d = virtio::parse_disk_option(text);
    if (!d) return fail(d.error());
    auto blk = virtio::Block::open(*d);
    if (!blk) return fail(blk.error());
    disks.push_back(std::move(*blk));
  }

  auto kernel = MappedFile::open(o.kernel.empty() ? default_kernel() : o.kernel, "kernel");
  if (!kernel) {
    if (o.kernel.empty()) kernel.error().message += " (build the default guest with ./tools/demo, or pass --kernel)";
    return fail(kernel.error());
  }
  std::optional<MappedFile> initrd;
  if (o.initrd != "none") {
    auto f = MappedFile::open(o.initrd.empty() ? default_initrd() : o.initrd, "initrd");
    if (!f) return fail(f.error());
    initrd = std::move(*f);
  }

  // VICVMM_KVM_DEVICE lets tests point at a missing or unusable device.
  const char* kvm_path = std::getenv("VICVMM_KVM_DEVICE");
  auto kvm = Kvm::open(kvm_path && *kvm_path ? kvm_path : "/dev/kvm");
  if (!kvm) return fail(kvm.error());
  auto console = open_console(o.console, o.console_limit);
  if (!console) return fail(console.error());

  MachineConfig cfg;
  cfg.mem_size = *mem_size;
  cfg.vcpus = o.vcpus;
  cfg.console_fd = console->fd.get();
  cfg.console_limit = console->limit;
  bool interactive = o.console == "stdout" && isatty(0) && isatty(1);
  cfg.console_unbuffered = interactive;
  cfg.timeout = std::chrono::seconds(o.timeout_s);
  auto machine = Machine::create(*kvm, cfg);
  if (!machine) return fail(machine.error());
  Machine& m = **machine;
  if (!o.no_rng) {
    auto rng = m.add_virtio(std::make_shared<virtio::Rng>());
    if (!rng) return fail(rng.error());
  }
  for (auto& d : disks) {
    auto slot = m.add_virtio(std::move(d));
    if (!slot) return fail(slot.error());
  }

  LinuxBootSpec spec;
  spec.kernel = kernel->bytes();
  if (initrd) spec.initrd = initrd->bytes();
  spec.extra_cmdline = o.cmdline;
  spec.agent.argv = o.command;
  spec.agent.env = default_env(o.env);  // never lose PATH to --env
  spec.agent.hostname = o.hostname;
  spec.agent.flags = o.port_doorbell ? VIC_MB_CHANNEL_PORT : 0;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  spec.agent.wallclock_ns = static_cast<uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(now.tv_nsec);
  auto used_cmdline = boot_linux(m, spec);
  if (!used_cmdline) return fail(used_cmdline.error());

  uint64_t before_run = monotonic_ns();
  Result<StopInfo> stop;
  {
    std::optional<RawTerminal> raw;
    std::optional<StdinPump> pump;
    if (interactive) {
      raw.emplace();
      pump.emplace(m.serial());
    }
    stop = m.run();
  }
  uint64_t end = monotonic_ns();
  if (!stop) return fail(stop.error());

  if (o.stats) {
    const auto& s = m.stats();
    auto ms = [](uint64_t a, uint64_t b) { return (a && b && b >= a) ? (b - a) / 1e6 : 0.0; };
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    fmt::print(stderr, "--- vicvmm stats ---\ncmdline: {}\n{}", *used_cmdline, m.stats_report());
    fmt::print(stderr,
               "wall (ms from process start): VMM setup before first KVM_RUN {:.2f}, guest init (agent ready) {:.1f}, "
               "command exit {:.1f}, total {:.1f}\n",
               ms(process_start_ns, before_run), ms(process_start_ns, s.t_agent_ready.load()),
               ms(process_start_ns, s.t_stopped.load()), ms(process_start_ns, end));
    fmt::print(stderr, "VMM max RSS: {} KiB\n", ru.ru_maxrss);
  }

  switch (stop->reason) {
    case StopReason::CommandExited:
      return stop->exit_status;
    case StopReason::Timeout:
      fmt::print(stderr, "vicvmm: guest timed out: {}\n", stop->detail);
      return kExitTimeout;
    default:
      fmt::print(stderr, "vicvmm: guest stopped: {}: {}\n", stop_reason_name(stop->reason), stop->detail);
      return kExitGuestFailed;
  }
}

}  // namespace vicvmm::cli
