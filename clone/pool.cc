#include "clone/pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include "vmm/io/event_loop.h"
#include "vmm/net/slirp_backend.h"
#include "vmm/parked_threads.h"
#include "vmm/seccomp/seccomp.h"
#include "vmm/virtio/spec.h"

namespace vicvmm {

namespace {
constexpr int kReapers = 4;

// Lowest CPU priority for this thread only (Linux nice values are per thread).
void lower_own_priority() { setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19); }
}  // namespace

ClonePool::ClonePool(const Kvm& kvm, std::shared_ptr<const Template> tmpl, PoolOptions opts)
    : kvm_(kvm), tmpl_(std::move(tmpl)), opts_(std::move(opts)) {
  // The builder confines itself; a thread it started would inherit its
  // filter, so the shared I/O and network threads start here first.
  const auto& devices = tmpl_->state().devices;
  Result<> shared = devices.empty() ? Result<>{} : EventLoop::shared().start();
  bool has_net = std::any_of(devices.begin(), devices.end(),
                             [](const auto& d) { return d.spec.device_id == virtio::kDeviceNet; });
  if (shared && has_net) shared = net::SlirpBackend::start_network_thread();
  // Templates have one vCPU: one parked vCPU thread per clone that may
  // run at once, up to a few; more start on demand.
  if (shared) shared = ParkedThreads::vcpus().prestart(std::min<size_t>(opts_.target, 4));
  if (!shared) last_error_ = shared.error();
  builder_ = std::thread([this] { builder(); });
  for (int i = 0; i < kReapers; ++i) reapers_.emplace_back([this] { reaper(); });
}

ClonePool::~ClonePool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  reap_cv_.notify_all();
  builder_.join();
  for (auto& r : reapers_) r.join();
}

void ClonePool::builder() {
  lower_own_priority();
  std::unique_lock lock(mu_);
  if (auto c = seccomp::confine_current_thread(seccomp::ThreadKind::PoolBuilder); !c && !last_error_) {
    last_error_ = c.error();
    ready_cv_.notify_all();
  }
  while (!stop_) {
    if (ready_.size() < opts_.target && built_.load() < opts_.limit && !last_error_) {
      lock.unlock();
      auto shell = Clone::create(kvm_, tmpl_, opts_.clone);
      lock.lock();
      if (shell) {
        ready_.push_back(std::move(*shell));
        built_.fetch_add(1);
      } else {
        last_error_ = shell.error();  // e.g. out of memory or fds: stop building
      }
      ready_cv_.notify_all();
      continue;
    }
    cv_.wait(lock);
  }
}

void ClonePool::reaper() {
  lower_own_priority();
  // Unconfined if this fails: it only destroys what the pool released.
  (void)seccomp::confine_current_thread(seccomp::ThreadKind::PoolReaper);
  std::unique_lock lock(mu_);
  // On stop, still destroy what was released, so the pool's owner does not
  // pay for it on its own thread.
  while (!stop_ || !graveyard_.empty()) {
    if (graveyard_.empty()) {
      reap_cv_.wait(lock);
      continue;
    }
    auto victim = std::move(graveyard_.front());
    graveyard_.pop_front();
    lock.unlock();
    victim.reset();
    lock.lock();
  }
}

Result<std::unique_ptr<Clone>> ClonePool::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!ready_.empty()) {
      auto c = std::move(ready_.front());
      ready_.pop_front();
      cv_.notify_all();  // refill
      return c;
    }
  }
  on_demand_.fetch_add(1);
  cv_.notify_all();
  return Clone::create(kvm_, tmpl_, opts_.clone);
}

void ClonePool::release(std::unique_ptr<Clone> c) {
  if (!c) return;
  {
    std::lock_guard lock(mu_);
    graveyard_.push_back(std::move(c));
  }
  reap_cv_.notify_one();
}

Result<> ClonePool::wait_ready(size_t n) {
  std::unique_lock lock(mu_);
  ready_cv_.wait(lock, [&] { return ready_.size() >= std::min({n, opts_.target, opts_.limit}) || last_error_; });
  if (last_error_ && ready_.size() < std::min({n, opts_.target, opts_.limit})) return tl::unexpected(*last_error_);
  return {};
}

size_t ClonePool::ready() const {
  std::lock_guard lock(mu_);
  return ready_.size();
}

}  // namespace vicvmm
