#include "serve/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

#include "clone/clone.h"
#include "clone/template.h"
#include "serve/vm_memory.h"
#include "serve/worker_protocol.h"
#include "vmm/host/nested_pvm.h"

namespace vicvmm::serve {

namespace {

constexpr int kExitWorkerFailed = 125;  // as the CLI: the VMM could not run the container
constexpr int kExitStopped = 143;       // 128 + SIGTERM: docker stop
constexpr int kExitGuestFailed = 126;

// Appends whole frames: a short write would tear the framing for readers.
void append_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk: output is dropped, the container runs on
    done += static_cast<size_t>(n);
  }
}

void write_exit_file(const std::string& path, int status, const std::string& reason) {
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return;
  nlohmann::json j = {{"status", status}, {"reason", reason}, {"finished_ns", realtime_ns()}};
  append_all(fd.get(), j.dump() + "\n");
  fsync(fd.get());
  ::rename(tmp.c_str(), path.c_str());
}

int fail(int control, const std::string& message, const std::string& exit_file = {}) {
  std::fprintf(stderr, "vicvmm worker: %s\n", message.c_str());
  write_exit_file(exit_file, kExitWorkerFailed, message);
  (void)send_message(control, {{"error", message}});
  return kExitWorkerFailed;
}

}  // namespace

int worker_main(int control, const std::string& template_dir) {
  // SIGTERM/SIGINT become a stop request on a thread of their own.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Before the VM exists: its kernel memory is charged where it is made.
  const bool own_cgroup = join_own_memory_cgroup();
  struct LeaveCgroup {
    bool joined;
    ~LeaveCgroup() {
      if (joined) leave_own_memory_cgroup();
    }
  } leave{own_cgroup};
  auto kvm = Kvm::open();
  if (!kvm) return fail(control, kvm.error().message);
  auto tmpl = Template::load(template_dir, detect_host_kind());
  if (!tmpl) return fail(control, tmpl.error().message);

  std::mutex log_mu;
  int log_fd = -1;
  bool tty = false;
  CloneOptions opts;
  opts.on_output = [&](uint32_t, uint32_t port, std::span<const uint8_t> bytes) {
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    std::lock_guard lock(log_mu);
    if (log_fd < 0) return;
    append_all(log_fd, tty ? std::string(text) : frame(port == 2 ? 2 : 1, text));
  };
  auto clone = Clone::create(*kvm, *tmpl, opts);
  if (!clone) return fail(control, clone.error().message);
  if (auto r = send_message(control, {{"ready", true}}); !r) return kExitWorkerFailed;

  auto msg = recv_message(control, "serve");
  if (!msg) return kExitWorkerFailed;  // serve went away before starting us: nothing to report
  auto start = msg->body.find("start");
  if (start == msg->body.end()) return fail(control, "expected a start message");
  auto spec = spec_from_json(*start);
  if (!spec) return fail(control, spec.error().message);
  if (msg->fds.size() != (spec->open_stdin ? 2u : 1u))
    return fail(control, "the start message carries the wrong descriptors", spec->exit_file);
  UniqueFd log = std::move(msg->fds[0]);
  UniqueFd input = spec->open_stdin ? std::move(msg->fds[1]) : UniqueFd();
  if (input)
    if (auto r = (*clone)->attach_stdin(input.get()); !r) return fail(control, r.error().message, spec->exit_file);
  {
    std::lock_guard lock(log_mu);
    log_fd = log.get();
    tty = spec->tty;
  }

  std::vector<net::PortForward> forwards;
  for (const auto& p : spec->publish) {
    auto f = net::parse_publish(p);
    if (!f) return fail(control, f.error().message, spec->exit_file);
    if (f->size() != 1) return fail(control, fmt::format("-p {}: one port per container", p), spec->exit_file);
    forwards.push_back(f->front());
  }
  if (!forwards.empty())
    if (auto r = (*clone)->publish(forwards); !r) return fail(control, r.error().message, spec->exit_file);
  AgentRequest req;
  req.argv = spec->argv;
  req.env = spec->env;
  req.workdir = spec->workdir;
  req.user = spec->user;
  req.hostname = spec->hostname;
  req.clone_id = spec->clone_id;
  req.wallclock_ns = realtime_ns();
  if (getrandom(req.seed.data(), sizeof req.seed, 0) != static_cast<ssize_t>(sizeof req.seed))
    return fail(control, "getrandom failed", spec->exit_file);
  if (!spec->image_disk.empty()) {
    req.flags |= VIC_MB_IMAGE_ROOT;
    if (auto r = (*clone)->attach_image(spec->image_disk); !r)
      return fail(control, r.error().message, spec->exit_file);
  }
  if (auto r = (*clone)->start(req); !r) return fail(control, r.error().message, spec->exit_file);

  Machine& machine = (*clone)->machine();
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    timespec poll{0, 100'000'000};
    while (!done) {
      siginfo_t si;
      if (sigtimedwait(&stop_signals, &si, &poll) > 0)
        machine.request_stop({StopReason::Stopped, kExitStopped, "stopped by a signal"});
    }
  });
  (void)send_message(control, {{"started", true}, {"pid", getpid()}});
  auto stop = (*clone)->run();
  done = true;
  stopper.join();

  int status;
  std::string reason;
  if (!stop) {
    status = kExitWorkerFailed;
    reason = stop.error().message;
  } else if (stop->reason == StopReason::CommandExited) {
    status = stop->exit_status;
  } else if (stop->reason == StopReason::Stopped) {
    status = kExitStopped;
    reason = stop->detail;
  } else {
    status = kExitGuestFailed;
    reason = fmt::format("{}: {}", stop_reason_name(stop->reason), stop->detail);
  }
  {
    std::lock_guard lock(log_mu);
    log_fd = -1;  // the I/O thread may still deliver: not into a closed file
  }
  write_exit_file(spec->exit_file, status, reason);
  (void)send_message(control, {{"exit", status}, {"reason", reason}});
  return status;
}

}  // namespace vicvmm::serve
