#include "serve/worker.h"

#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "clone/clone.h"
#include "clone/template.h"
#include "serve/vm_memory.h"
#include "serve/worker_protocol.h"
#include "vmm/host/nested_pvm.h"
#include "vmm/parked_threads.h"
#include "vmm/seccomp/seccomp.h"

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

// One `docker exec`: a session on the clone's exec channel whose output
// goes to the client's stream socket and whose stdin comes from it; runs on
// a detached thread of its own (the process ends with the container).
void serve_exec(std::shared_ptr<ExecChannel> channel_ptr, UniqueFd conn) {
  seccomp::note_inherited(seccomp::ThreadKind::Exec);  // started by the confined listener
  ExecChannel& channel = *channel_ptr;
  auto msg = recv_message(conn.get(), "serve");
  if (!msg) return;
  // docker run -t's terminal size: session 0 is the command's own terminal.
  if (auto r = msg->body.find("resize_main"); r != msg->body.end()) {
    if (r->is_array() && r->size() == 2 && (*r)[0].is_number_unsigned() && (*r)[1].is_number_unsigned())
      (void)channel.resize(0, static_cast<uint16_t>(std::min<uint64_t>((*r)[0].get<uint64_t>(), 0xffff)),
                           static_cast<uint16_t>(std::min<uint64_t>((*r)[1].get<uint64_t>(), 0xffff)));
    (void)send_message(conn.get(), {{"ok", true}});
    return;
  }
  auto body = msg->body.find("exec");
  auto spec = body == msg->body.end() ? Result<ExecSpec>(err("expected an exec message")) : exec_spec_from_json(*body);
  if (!spec) {
    (void)send_message(conn.get(), {{"error", spec.error().message}});
    return;
  }
  // No stream: a detached exec, whose output nobody reads.
  auto stream = std::make_shared<UniqueFd>(msg->fds.empty() ? UniqueFd() : std::move(msg->fds[0]));
  if (*stream) {
    // A client that stops reading loses output rather than stalling the
    // VM's I/O thread, which delivers it.
    timeval tv{10, 0};
    setsockopt(stream->get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool over = false;
  };
  auto done = std::make_shared<Done>();
  const int conn_fd = conn.get();
  ExecEvents ev;
  ev.output = [stream, tty = spec->tty, out = spec->attach_stdout, errs = spec->attach_stderr](
                  uint32_t which, std::span<const uint8_t> bytes) {
    if (!*stream || (which == 1 && !out) || (which == 2 && !errs)) return;
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    std::string data = tty ? std::string(text) : frame(static_cast<uint8_t>(which), text);
    for (size_t off = 0; off < data.size();) {
      ssize_t n = ::send(stream->get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the client is gone or stalled: its output is dropped
      off += static_cast<size_t>(n);
    }
  };
  ev.started = [conn_fd](uint32_t pid) { (void)send_message(conn_fd, {{"started", true}, {"pid", pid}}); };
  ev.exited = [conn_fd, done, stream](int status, const std::string& error) {
    // The exit before the stream ends: serve records it, then closes its
    // copy of the stream, and only then does the client see EOF.
    (void)send_message(conn_fd, {{"exit", status}, {"error", error}});
    if (*stream) ::shutdown(stream->get(), SHUT_RD);  // ends the stdin pump
    std::lock_guard lock(done->mu);
    done->over = true;
    done->cv.notify_all();
  };
  ExecRequest req{spec->argv, spec->env, spec->workdir, spec->user, spec->tty, spec->open_stdin && *stream};
  auto id = channel.start(req, ev);
  if (!id) {
    (void)send_message(conn_fd, {{"error", id.error().message}});
    return;
  }
  if (auto hex = msg->body.find("stdin_hex"); req.open_stdin && hex != msg->body.end() && hex->is_string()) {
    // What the client sent before serve handed its socket over.
    std::string h = hex->get<std::string>();
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
      uint8_t b = 0;
      if (std::from_chars(h.data() + i, h.data() + i + 2, b, 16).ec != std::errc()) break;
      bytes.push_back(b);
    }
    (void)channel.write_stdin(*id, bytes);
  }
  std::thread pump;
  if (req.open_stdin) {
    pump = std::thread([channel_ptr, stream, sid = *id, done] {
      seccomp::note_inherited(seccomp::ThreadKind::Exec);
      ExecChannel& ch = *channel_ptr;
      char buf[16384];
      for (;;) {
        ssize_t n = ::recv(stream->get(), buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF: the client's half-close ends stdin, not the output
        if (!ch.write_stdin(sid, {reinterpret_cast<uint8_t*>(buf), static_cast<size_t>(n)})) break;
      }
      bool over;
      {
        std::lock_guard lock(done->mu);
        over = done->over;
      }
      if (!over) (void)ch.close_stdin(sid);  // late is harmless: the guest drops it
    });
  }
  // Resizes and signals until serve hangs up (after the exit).
  for (;;) {
    auto m = recv_message(conn_fd, "serve");
    if (!m) break;
    if (auto r = m->body.find("resize"); r != m->body.end() && r->is_array() && r->size() == 2 &&
                                          (*r)[0].is_number_unsigned() && (*r)[1].is_number_unsigned())
      (void)channel.resize(*id, static_cast<uint16_t>(std::min<uint64_t>((*r)[0].get<uint64_t>(), 0xffff)),
                           static_cast<uint16_t>(std::min<uint64_t>((*r)[1].get<uint64_t>(), 0xffff)));
    if (auto sg = m->body.find("signal"); sg != m->body.end() && sg->is_number_integer())
      (void)channel.signal(*id, sg->get<int>());
  }
  {
    std::unique_lock lock(done->mu);
    done->cv.wait(lock, [&] { return done->over; });
  }
  if (pump.joinable()) pump.join();
}

// Ends a helper thread's wait at once: an eventfd its owner rings.
class StopBell {
 public:
  static Result<StopBell> make() {
    StopBell b;
    b.fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!b.fd_) return sys_err("worker: eventfd");
    return b;
  }
  void ring() const {
    uint64_t one = 1;
    (void)!::write(fd_.get(), &one, sizeof one);
  }
  // Sleeps until `fd` is readable (true), or the bell rang or `fd` failed
  // (false: the thread ends rather than spin on an error).
  bool wait_readable(int fd) const {
    for (;;) {
      pollfd pf[2] = {{fd, POLLIN, 0}, {fd_.get(), POLLIN, 0}};
      if (::poll(pf, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (pf[1].revents) return false;
      if (pf[0].revents & POLLIN) return true;
      if (pf[0].revents) return false;
    }
  }

 private:
  UniqueFd fd_;
};

// Accepts exec connections on the container's exec socket until stopped.
// Its thread starts, and takes the exec filter, while the worker is still
// idle: compiling the filter alone costs ~0.2 ms, kept off the start.
class ExecListener {
 public:
  static Result<std::unique_ptr<ExecListener>> prepare(std::shared_ptr<ExecChannel> channel) {
    VIC_ASSIGN(StopBell bell, StopBell::make());
    std::unique_ptr<ExecListener> l(new ExecListener(std::move(bell)));
    l->thread_ = std::thread([p = l.get(), channel] { p->loop(channel); });
    return l;
  }
  // From the start on: `sock` listens on `path` already (serve binds it
  // ahead), or, invalid, is bound here.
  Result<> begin(const std::string& path, UniqueFd sock) {
    if (!sock) {
      VIC_ASSIGN(sock, listen_seqpacket(path));
    }
    std::lock_guard lock(mu_);
    path_ = path;
    sock_ = std::move(sock);
    cv_.notify_all();
    return {};
  }
  ~ExecListener() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    stop_.ring();
    if (thread_.joinable()) thread_.join();
    if (!path_.empty()) ::unlink(path_.c_str());
  }

 private:
  explicit ExecListener(StopBell stop) : stop_(std::move(stop)) {}
  void loop(const std::shared_ptr<ExecChannel>& channel) {
    // Sessions run on threads this one starts: they inherit its filter.
    if (!seccomp::confine_current_thread(seccomp::ThreadKind::Exec)) return;  // no execs: each gets a 409
    int sock;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || sock_; });
      if (stopping_) return;
      sock = sock_.get();
    }
    while (stop_.wait_readable(sock)) {
      UniqueFd conn(::accept4(sock, nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      std::thread(serve_exec, channel, std::move(conn)).detach();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::string path_;
  UniqueFd sock_;
  StopBell stop_;  // the destructor ends the accept loop at once
  std::thread thread_;
};

// Maps the pages of code and read-only data of the program and its
// libraries into this process now: a start runs code paths the idle worker
// never touched (its JSON, the agent's request, disk attach), and their
// page faults (~15 % of a start's CPU in the worker, perf) would otherwise
// fall on the start.
// The pages are the page cache's, shared with every vicvmm process.
void warm_code_pages() {
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void*) {
        const long page = sysconf(_SC_PAGESIZE);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W)) continue;
          uintptr_t begin = (info->dlpi_addr + ph.p_vaddr) & ~static_cast<uintptr_t>(page - 1);
          uintptr_t end = info->dlpi_addr + ph.p_vaddr + ph.p_memsz;
          if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) continue;
          for (uintptr_t a = begin; a < end; a += static_cast<uintptr_t>(page))  // before Linux 5.14
            (void)*reinterpret_cast<const volatile char*>(a);
        }
        return 0;
      },
      nullptr);
}

// Turns SIGTERM/SIGINT (blocked in every thread) into a stop request for
// the VM, on a thread of its own started while the worker is idle. It
// sleeps until a signal or its end: no periodic wake-ups.
class SignalStopper {
 public:
  static Result<std::unique_ptr<SignalStopper>> start(Machine& machine, const sigset_t& signals) {
    VIC_ASSIGN(StopBell bell, StopBell::make());
    std::unique_ptr<SignalStopper> s(new SignalStopper(std::move(bell)));
    s->signals_.reset(signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!s->signals_) return sys_err("worker: signalfd");
    s->thread_ = std::thread([p = s.get(), &machine] {
      while (p->done_.wait_readable(p->signals_.get())) {
        signalfd_siginfo si;
        if (::read(p->signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si))
          machine.request_stop({StopReason::Stopped, kExitStopped, "stopped by a signal"});
      }
    });
    return s;
  }
  ~SignalStopper() {
    done_.ring();
    if (thread_.joinable()) thread_.join();
  }

 private:
  explicit SignalStopper(StopBell done) : done_(std::move(done)) {}
  UniqueFd signals_;
  StopBell done_;
  std::thread thread_;
};

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
  // The guest's fresh randomness now, not at start: getrandom() can take
  // milliseconds here (3 ms in one traced start), off the start path.
  std::array<uint64_t, 4> seed{};
  if (getrandom(seed.data(), sizeof seed, 0) != static_cast<ssize_t>(sizeof seed))
    return fail(control, "getrandom failed");
  // Its vCPU thread too (started and confined: ~80 µs), and the threads
  // that take signals and exec connections.
  if (auto r = ParkedThreads::vcpus().prestart(1); !r) return fail(control, r.error().message);
  auto stopper = SignalStopper::start((*clone)->machine(), stop_signals);
  if (!stopper) return fail(control, stopper.error().message);
  std::unique_ptr<ExecListener> exec_listener;
  if ((*clone)->exec()) {
    auto l = ExecListener::prepare((*clone)->exec());
    if (!l) return fail(control, l.error().message);
    exec_listener = std::move(*l);
  }
  warm_code_pages();
  prepare_recv_buffer();
  if (auto r = send_message(control, {{"ready", true}}); !r) return kExitWorkerFailed;

  auto msg = recv_message(control, "serve");
  if (!msg) return kExitWorkerFailed;  // serve went away before starting us: nothing to report
  // The start's cost in this process (every thread: the I/O and network
  // threads publish ports and attach disks), reported to serve's log.
  const uint64_t start_wall = monotonic_ns(), start_cpu = process_cpu_ns();
  auto start = msg->body.find("start");
  if (start == msg->body.end()) return fail(control, "expected a start message");
  auto spec = spec_from_json(*start);
  if (!spec) return fail(control, spec.error().message);
  const bool has_listener = msg->body.value("exec_listener", false);
  if (msg->fds.size() != 1u + spec->open_stdin + has_listener)
    return fail(control, "the start message carries the wrong descriptors", spec->exit_file);
  UniqueFd log = std::move(msg->fds[0]);
  UniqueFd input = spec->open_stdin ? std::move(msg->fds[1]) : UniqueFd();
  UniqueFd exec_sock = has_listener ? std::move(msg->fds.back()) : UniqueFd();
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
  req.seed = seed;
  if (spec->tty) req.flags |= VIC_MB_TTY;
  if (!spec->image_disk.empty()) {
    req.flags |= VIC_MB_IMAGE_ROOT;
    if (auto r = (*clone)->attach_image(spec->image_disk); !r)
      return fail(control, r.error().message, spec->exit_file);
  }
  if (auto r = (*clone)->start(req); !r) return fail(control, r.error().message, spec->exit_file);

  // docker exec: from now until the VM stops (a failure here costs exec only).
  if (exec_listener && !spec->exec_socket.empty())
    if (auto r = exec_listener->begin(spec->exec_socket, std::move(exec_sock)); !r)
      std::fprintf(stderr, "vicvmm worker: %s (no exec in this container)\n", r.error().message.c_str());

  (void)send_message(control, {{"started", true},
                               {"pid", getpid()},
                               {"wall_ns", monotonic_ns() - start_wall},
                               {"cpu_ns", process_cpu_ns() - start_cpu}});
  auto stop = (*clone)->run();  // ends every exec session too
  stopper->reset();
  exec_listener.reset();

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
