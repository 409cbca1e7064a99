#include "clone/pool.h"

namespace vicvmm {

ClonePool::ClonePool(const Kvm& kvm, std::shared_ptr<const Template> tmpl, PoolOptions opts)
    : kvm_(kvm), tmpl_(std::move(tmpl)), opts_(std::move(opts)), thread_([this] { worker(); }) {}

ClonePool::~ClonePool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ClonePool::worker() {
  std::unique_lock lock(mu_);
  // On stop, still destroy what was released, so the pool's owner does not
  // pay for it on its own thread.
  while (!stop_ || !graveyard_.empty()) {
    // Destroying first frees kernel memory before building more.
    if (!graveyard_.empty()) {
      auto victim = std::move(graveyard_.front());
      graveyard_.pop_front();
      lock.unlock();
      victim.reset();
      lock.lock();
      continue;
    }
    if (!stop_ && ready_.size() < opts_.target && !last_error_) {
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
  cv_.notify_all();
}

Result<> ClonePool::wait_ready(size_t n) {
  std::unique_lock lock(mu_);
  ready_cv_.wait(lock, [&] { return ready_.size() >= std::min(n, opts_.target) || last_error_; });
  if (last_error_ && ready_.size() < std::min(n, opts_.target)) return tl::unexpected(*last_error_);
  return {};
}

size_t ClonePool::ready() const {
  std::lock_guard lock(mu_);
  return ready_.size();
}

}  // namespace vicvmm
