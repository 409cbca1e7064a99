#include "vmm/io/event_loop.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "vmm/seccomp/seccomp.h"

namespace vicvmm {

EventLoop& EventLoop::shared() {
  static EventLoop loop;
  static std::once_flag once;
  std::call_once(once, [] {
    if (auto r = loop.start(); !r) loop.start_error_ = r.error().message;
  });
  return loop;
}

EventLoop::EventLoop() = default;

EventLoop::~EventLoop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t r = ::write(wake_.get(), &one, sizeof one);
    (void)r;
    thread_.join();
  }
}

Result<> EventLoop::start() {
  if (thread_.joinable()) return {};
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return sys_err("I/O loop: epoll_create1");
  wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return sys_err("I/O loop: eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // token 0: the wake fd
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) < 0) return sys_err("I/O loop: epoll_ctl");
  // The thread confines itself before serving anything; a failure to do so
  // is start()'s error, and the loop does not run.
  auto t = seccomp::start_confined_thread(seccomp::ThreadKind::Io, [this] { run(); });
  if (!t) {
    epoll_.reset();
    return with_context(t.error(), "I/O loop");
  }
  thread_ = std::move(*t);
  return {};
}

Result<uint64_t> EventLoop::add(int fd, uint32_t events, Handler handler) {
  if (!epoll_) return err("I/O loop: not started{}{}", start_error_.empty() ? "" : ": ", start_error_);
  std::lock_guard lock(mu_);
  uint64_t token = next_token_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return sys_err("I/O loop: watching fd {}", fd);
  entries_[token] = std::make_shared<Entry>(Entry{fd, std::move(handler)});
  return token;
}

void EventLoop::remove(uint64_t token) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(token);
    if (it == entries_.end()) return;
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->fd, nullptr);
    entries_.erase(it);
  }
  // Wait out a handler that is running now (unless it is the caller).
  if (!on_loop_thread()) std::lock_guard wait(dispatch_mu_);
}

size_t EventLoop::watched() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void EventLoop::run() {
  // Devices write to host fds (a container's stdout into a closed pipe):
  // EPIPE, never a SIGPIPE that kills the process.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t token = events[i].data.u64;
      if (token == 0) return;
      std::lock_guard running(dispatch_mu_);
      std::shared_ptr<Entry> e;
      {
        std::lock_guard lock(mu_);
        auto it = entries_.find(token);
        if (it == entries_.end()) continue;  // removed after epoll_wait returned
        e = it->second;
      }
      e->handler(events[i].events);
    }
  }
}

uint64_t EventLoop::thread_cpu_ns() {
  if (!thread_.joinable()) return 0;
  clockid_t clock;
  timespec ts{};
  if (pthread_getcpuclockid(thread_.native_handle(), &clock) != 0 || clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace vicvmm
