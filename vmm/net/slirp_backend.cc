#include "vmm/net/slirp_backend.h"

#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <slirp/libslirp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "vmm/seccomp/seccomp.h"

namespace vicvmm::net {

struct Timer {
  SlirpTimerId id;
  void* cb_opaque;
  int64_t expire_ms = -1;  // -1: not armed
};

namespace {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// One thread per process polls every backend's slirp sockets.
class NetLoop {
 public:
  static NetLoop& shared() {
    static NetLoop* loop = new NetLoop;  // never destroyed: backends may outlive static destructors
    return *loop;
  }

  // Starts the network thread once; it confines itself to the network
  // allow-list first, and a failure to is the error here.
  Result<> start() {
    std::lock_guard lock(start_mu_);
    if (thread_.joinable()) return {};
    auto t = seccomp::start_confined_thread(seccomp::ThreadKind::Net, [this] { run(); });
    if (!t) return with_context(t.error(), "net");
    thread_ = std::move(*t);
    return {};
  }

  void add(SlirpBackend* b) {
    {
      std::lock_guard lock(mu_);
      backends_.push_back(b);
    }
    wake();
  }
  // Once this returns, the loop never touches `b` again.
  void remove(SlirpBackend* b) {
    std::lock_guard lock(mu_);
    backends_.erase(std::remove(backends_.begin(), backends_.end(), b), backends_.end());
  }
  // Runs `fn` on the network thread and waits for it.
  void call(const std::function<void()>& fn) {
    std::promise<void> done;
    {
      std::lock_guard lock(mu_);
      tasks_.push_back([&] {
        fn();
        done.set_value();
      });
    }
    wake();
    done.get_future().wait();
  }
  void wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_.get(), &one, sizeof one);
    (void)n;
  }

 private:
  NetLoop() : wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

  static int add_poll(int fd, int events, void* opaque) {
    auto* fds = static_cast<std::vector<pollfd>*>(opaque);
    short ev = 0;
    if (events & SLIRP_POLL_IN) ev |= POLLIN;
    if (events & SLIRP_POLL_OUT) ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI) ev |= POLLPRI;
    fds->push_back({fd, ev, 0});
    return static_cast<int>(fds->size() - 1);
  }
  static int get_revents(int idx, void* opaque) {
    auto* fds = static_cast<std::vector<pollfd>*>(opaque);
    if (idx < 0 || static_cast<size_t>(idx) >= fds->size()) return 0;
    short r = (*fds)[static_cast<size_t>(idx)].revents;
    int ev = 0;
    if (r & POLLIN) ev |= SLIRP_POLL_IN;
    if (r & POLLOUT) ev |= SLIRP_POLL_OUT;
    if (r & POLLPRI) ev |= SLIRP_POLL_PRI;
    if (r & POLLERR) ev |= SLIRP_POLL_ERR;
    if (r & POLLHUP) ev |= SLIRP_POLL_HUP;
    return ev;
  }

  void run() {
    // libslirp writes to sockets whose peer may be gone: EPIPE, not a
    // process-killing SIGPIPE (the signal stays pending on this thread).
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    std::vector<pollfd> fds;
    std::vector<SlirpBackend*> polled;
    for (;;) {
      fds.clear();
      polled.clear();
      fds.push_back({wake_.get(), POLLIN, 0});
      uint32_t timeout = 1000;
      {
        std::lock_guard lock(mu_);
        for (auto& t : tasks_) t();
        tasks_.clear();
        int64_t now_ms = now_ns() / 1'000'000;
        for (SlirpBackend* b : backends_) {
          b->loop_input();
          for (Timer* t : b->timers())
            if (t->expire_ms >= 0)
              timeout = static_cast<uint32_t>(std::clamp<int64_t>(t->expire_ms - now_ms, 0, timeout));
          slirp_pollfds_fill(b->slirp(), &timeout, add_poll, &fds);
          polled.push_back(b);
        }
      }
      int r = poll(fds.data(), fds.size(), static_cast<int>(timeout));
      if (fds[0].revents & POLLIN) {
        uint64_t n;
        ssize_t k = ::read(wake_.get(), &n, sizeof n);
        (void)k;
      }
      std::lock_guard lock(mu_);
      int64_t now_ms = now_ns() / 1'000'000;
      for (SlirpBackend* b : polled) {
        if (std::find(backends_.begin(), backends_.end(), b) == backends_.end()) continue;  // removed meanwhile
        slirp_pollfds_poll(b->slirp(), r < 0, get_revents, &fds);
        for (Timer* t : std::vector<Timer*>(b->timers()))  // a handler may free timers
          if (t->expire_ms >= 0 && t->expire_ms <= now_ms) {
            t->expire_ms = -1;
            slirp_handle_timer(b->slirp(), t->id, t->cb_opaque);
          }
        b->loop_input();
      }
    }
  }

  UniqueFd wake_;
  std::mutex start_mu_;  // thread_'s start
  std::mutex mu_;
  std::vector<SlirpBackend*> backends_;
  std::vector<std::function<void()>> tasks_;
  std::thread thread_;
};

ssize_t send_packet(const void* buf, size_t len, void* opaque) {
  static_cast<SlirpBackend*>(opaque)->queue_for_guest(static_cast<const uint8_t*>(buf), len);
  return static_cast<ssize_t>(len);
}
void guest_error(const char*, void*) {}  // a misbehaving guest only hurts itself
int64_t clock_get_ns(void*) { return now_ns(); }
void* timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque) {
  auto* t = new Timer{id, cb_opaque, -1};
  static_cast<SlirpBackend*>(opaque)->timers().push_back(t);
  return t;
}
void timer_free(void* timer, void* opaque) {
  auto& v = static_cast<SlirpBackend*>(opaque)->timers();
  v.erase(std::remove(v.begin(), v.end(), static_cast<Timer*>(timer)), v.end());
  delete static_cast<Timer*>(timer);
}
void timer_mod(void* timer, int64_t expire_ms, void*) { static_cast<Timer*>(timer)->expire_ms = expire_ms; }
void register_poll_fd(int, void*) {}
void unregister_poll_fd(int, void*) {}
void notify(void*) { NetLoop::shared().wake(); }

const SlirpCb kCallbacks = {
    .send_packet = send_packet,
    .guest_error = guest_error,
    .clock_get_ns = clock_get_ns,
    .timer_new = nullptr,
    .timer_free = timer_free,
    .timer_mod = timer_mod,
    .register_poll_fd = register_poll_fd,
    .unregister_poll_fd = unregister_poll_fd,
    .notify = notify,
    .init_completed = nullptr,
    .timer_new_opaque = timer_new_opaque,
};

}  // namespace

Result<> SlirpBackend::start_network_thread() { return NetLoop::shared().start(); }

Result<std::shared_ptr<SlirpBackend>> SlirpBackend::create(const std::vector<PortForward>& forwards) {
  std::shared_ptr<SlirpBackend> b(new SlirpBackend);
  b->to_guest_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!b->to_guest_event_) return sys_err("net: eventfd");
  SlirpConfig cfg{};
  cfg.version = 4;
  cfg.in_enabled = true;
  inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
  inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
  inet_pton(AF_INET, kGatewayAddress, &cfg.vhost);
  inet_pton(AF_INET, "10.0.2.15", &cfg.vdhcp_start);
  inet_pton(AF_INET, kDnsAddress, &cfg.vnameserver);
  cfg.in6_enabled = false;
  cfg.vhostname = "vicvmm";
  cfg.disable_dhcp = true;  // vic-init configures the address itself
  b->slirp_ = slirp_new(&cfg, &kCallbacks, b.get());
  if (!b->slirp_) return err("net: slirp_new failed");
  VIC_TRY(b->add_forwards(forwards));  // not registered yet: no other thread uses slirp_
  VIC_TRY(NetLoop::shared().start());
  NetLoop::shared().add(b.get());
  return b;
}

Result<> SlirpBackend::add_forwards(const std::vector<PortForward>& forwards) {
  for (const auto& f : forwards) {
    in_addr host{}, guest{};
    inet_pton(AF_INET, f.host_ip.c_str(), &host);
    inet_pton(AF_INET, kGuestAddress, &guest);
    if (slirp_add_hostfwd(slirp_, f.udp, host, f.host_port, guest, f.guest_port) != 0) {
      remove_forwards();
      return err("net: cannot publish {}:{}/{} (in use, or not an address of this host)", f.host_ip, f.host_port,
                 f.udp ? "udp" : "tcp");
    }
    published_.push_back(f);
  }
  return {};
}

void SlirpBackend::remove_forwards() {
  for (const auto& f : published_) {
    in_addr host{};
    inet_pton(AF_INET, f.host_ip.c_str(), &host);
    slirp_remove_hostfwd(slirp_, f.udp, host, f.host_port);
  }
  published_.clear();
}

Result<> SlirpBackend::publish(const std::vector<PortForward>& forwards) {
  Result<> r;
  NetLoop::shared().call([&] { r = add_forwards(forwards); });
  return r;
}

void SlirpBackend::unpublish_all() {
  NetLoop::shared().call([&] { remove_forwards(); });
}

SlirpBackend::~SlirpBackend() {
  if (!slirp_) return;
  NetLoop::shared().remove(this);
  slirp_cleanup(slirp_);  // frees its timers through timer_free
}

void SlirpBackend::send_from_guest(std::vector<uint8_t> frame) {
  {
    std::lock_guard lock(mu_);
    if (to_slirp_.size() >= kMaxQueuedFrames) {
      ++dropped_;
      return;
    }
    to_slirp_.push_back(std::move(frame));
  }
  NetLoop::shared().wake();
}

void SlirpBackend::loop_input() {
  std::deque<std::vector<uint8_t>> frames;
  {
    std::lock_guard lock(mu_);
    frames.swap(to_slirp_);
  }
  for (const auto& f : frames) slirp_input(slirp_, f.data(), static_cast<int>(f.size()));
}

void SlirpBackend::queue_for_guest(const uint8_t* data, size_t len) {
  {
    std::lock_guard lock(mu_);
    if (to_guest_.size() >= kMaxQueuedFrames) {
      ++dropped_;  // TCP retransmits; the guest is not taking frames
      return;
    }
    to_guest_.emplace_back(data, data + len);
  }
  uint64_t one = 1;
  ssize_t n = ::write(to_guest_event_.get(), &one, sizeof one);
  (void)n;
}

bool SlirpBackend::take_for_guest(std::vector<uint8_t>& frame) {
  std::lock_guard lock(mu_);
  if (to_guest_.empty()) return false;
  frame = std::move(to_guest_.front());
  to_guest_.pop_front();
  return true;
}

uint64_t SlirpBackend::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

}  // namespace vicvmm::net
