// `vicvmm run`: boot the guest, run one command in it, exit with its status.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/image_ref.h"
#include "tools/vicvmm/options.h"
#include "vmm/boot/mptable.h"
#include "vmm/linux_boot.h"
#include "vmm/mapped_file.h"
#include "vmm/virtio/block.h"
#include "vmm/virtio/console.h"
#include "vmm/virtio/device_spec.h"
#include "vmm/virtio/rng.h"

namespace vicvmm::cli {

namespace {

int fail(const Error& e) {
  fmt::print(stderr, "vicvmm: error: {}\n", e.message);
  return kExitVmmError;
}

// Feeds the host's stdin to the guest's stdin port until EOF (then the
// guest reads EOF) or until told to stop. Works for a pipe, a file or a
// terminal (cooked: the host's line editing and ^D for EOF).
class StdinPump {
 public:
  explicit StdinPump(virtio::Console& console) : thread_([this, &console] { pump(console); }) {}
  ~StdinPump() {
    stop_ = true;
    thread_.join();
  }

 private:
  void pump(virtio::Console& console) {
    uint8_t buf[16384];
    while (!stop_) {
      pollfd p{0, POLLIN, 0};
      int r = poll(&p, 1, 100);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) continue;
      ssize_t n = r > 0 && !(p.revents & POLLNVAL) ? read(0, buf, sizeof buf) : 0;
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;  // EOF (or an unreadable stdin): the guest gets EOF
      for (size_t done = 0; done < static_cast<size_t>(n) && !stop_;)
        done += console.write_input({buf + done, static_cast<size_t>(n) - done}, std::chrono::milliseconds(100));
    }
    console.close_input();
  }
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The guest's stdout and stderr ports, to ours (all of it: partial writes
// and EINTR retried). Returns 0 or the errno that lost the rest.
int write_all(int fd, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;  // EPIPE, a full disk: the rest of the output is dropped
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return 0;
}

}  // namespace

int cmd_run(const RunOptions& o, uint64_t process_start_ns) {
  auto mem_size = parse_guest_memory(o.mem);
  if (!mem_size) return fail(mem_size.error());
  if (o.vcpus == 0 || o.vcpus > boot::kMpFitCpus)
    return fail(Error{fmt::format("--vcpus {}: must be 1..{} (what the MP table holds)", o.vcpus, boot::kMpFitCpus)});

  std::vector<net::PortForward> forwards;
  for (const auto& text : o.publish) {
    auto f = net::parse_publish(text);
    if (!f) return fail(f.error());
    if (f->size() != 1) return fail(Error{fmt::format("-p {}: a port range needs fork -n", text)});
    forwards.push_back(f->front());
  }
  const bool with_net = o.net || !forwards.empty();

  // An image's disk is /dev/vda, the first; the user's disks follow.
  std::vector<std::string> disk_options = o.disks;
  std::optional<image::ProcessSpec> process;
  if (!o.image.empty()) {
    auto img = open_image(o.image);
    if (!img) return fail(img.error());
    image::Overrides ov;
    ov.cmd = o.command;
    ov.env = o.env;
    ov.workdir = o.workdir;
    ov.user = o.user;
    if (o.entrypoint) ov.entrypoint = o.entrypoint->empty() ? std::vector<std::string>{}
                                                             : std::vector<std::string>{*o.entrypoint};
    auto p = image::process_spec(o.image, img->image.config, ov);
    if (!p) return fail(p.error());
    process = std::move(*p);
    disk_options.insert(disk_options.begin(), img->disk + ",ro");
  } else if (o.workdir || o.user || o.entrypoint) {
    return fail(Error{"--workdir, --user and --entrypoint need --image"});
  }

  // Disks open (and lock) before anything else, so a bad one fails fast.
  std::vector<std::shared_ptr<virtio::Block>> disks;
  for (const auto& text : disk_options) {
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
  std::vector<std::string> inputs = {o.kernel.empty() ? default_kernel() : o.kernel,
                                     o.initrd == "none" ? "" : (o.initrd.empty() ? default_initrd() : o.initrd)};
  for (const auto& d : disks) inputs.push_back(d->path());
  auto console = open_console(o.console, o.console_limit, inputs);
  if (!console) return fail(console.error());

  MachineConfig cfg;
  cfg.mem_size = *mem_size;
  cfg.vcpus = o.vcpus;
  cfg.console_fd = console->fd.get();
  cfg.console_limit = console->limit;
  // Kernel messages stay on the console, unbuffered when a person watches.
  cfg.console_unbuffered = o.console == "stdout" && isatty(1);
  cfg.timeout = std::chrono::seconds(o.timeout_s);
  auto machine = Machine::create(*kvm, cfg);
  if (!machine) return fail(machine.error());
  Machine& m = **machine;
  auto stdio = virtio::Console::create();
  if (!stdio) return fail(stdio.error());
  std::shared_ptr<virtio::Console> console_dev = *stdio;
  // The first error writing the command's stdout: reported at the end (a
  // full disk must not pass for success). EPIPE is a reader that is done.
  std::atomic<int> stdout_errno{0};
  console_dev->set_output([&stdout_errno](uint32_t port, std::span<const uint8_t> bytes) {
    if (port != virtio::Console::kStdout && port != virtio::Console::kStderr) return;  // the exec channel's
    int e = write_all(port == virtio::Console::kStderr ? 2 : 1, bytes);
    int none = 0;
    if (e != 0 && e != EPIPE && port == virtio::Console::kStdout) stdout_errno.compare_exchange_strong(none, e);
  });
  if (auto slot = m.add_virtio(console_dev); !slot) return fail(slot.error());
  if (!o.no_rng) {
    auto rng = m.add_virtio(std::make_shared<virtio::Rng>());
    if (!rng) return fail(rng.error());
  }
  for (auto& d : disks) {
    auto slot = m.add_virtio(std::move(d));
    if (!slot) return fail(slot.error());
  }
  if (with_net) {
    virtio::DeviceSpec net_spec{virtio::kDeviceNet, {}, false, {}, forwards};
    auto dev = virtio::open_device(net_spec);
    if (!dev) return fail(dev.error());
    if (auto slot = m.add_virtio(std::move(*dev)); !slot) return fail(slot.error());
  }

  LinuxBootSpec spec;
  spec.kernel = kernel->bytes();
  if (initrd) spec.initrd = initrd->bytes();
  spec.extra_cmdline = o.cmdline;
  spec.agent.argv = o.command;
  spec.agent.env = default_env(o.env);  // never lose PATH to --env
  spec.agent.hostname = o.hostname;
  spec.agent.flags = (o.port_doorbell ? VIC_MB_CHANNEL_PORT : 0) | VIC_MB_STDIO_PORTS | (with_net ? VIC_MB_NET : 0);
  if (process) {
    spec.agent.argv = process->argv;
    spec.agent.env = process->env;
    spec.agent.workdir = process->workdir;
    spec.agent.user = process->user;
    spec.agent.flags |= VIC_MB_IMAGE_ROOT;
  }
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  spec.agent.wallclock_ns = static_cast<uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(now.tv_nsec);
  auto used_cmdline = boot_linux(m, spec);
  if (!used_cmdline) return fail(used_cmdline.error());

  uint64_t before_run = monotonic_ns();
  Result<StopInfo> stop;
  {
    StdinPump pump(*console_dev);
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

  if (int e = stdout_errno.load(); e != 0) {
    fmt::print(stderr, "vicvmm: error: writing standard output: {}\n", std::strerror(e));
    if (stop->reason == StopReason::CommandExited && stop->exit_status == 0) return kExitVmmError;
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
