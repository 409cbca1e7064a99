// Keeps clone shells (VM, memslots over the template mapping, irqchip,
// vCPU, CPUID, template state) built ahead of time on a background thread,
// so a clone request only writes the mailbox and runs. Finished clones are
// destroyed by separate reaper threads, off the caller's path: closing a VM
// mostly sleeps (~15-20 ms measured here), so several close in parallel.
// Both run at the lowest priority so that refilling never competes with
// running clones for the CPUs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "clone/clone.h"

namespace vicvmm {

struct PoolOptions {
  size_t target = 8;  // shells kept ready
  size_t limit = SIZE_MAX;  // shells built in all (e.g. the number of clones a run needs)
  CloneOptions clone;
};

class ClonePool {
 public:
  ClonePool(const Kvm& kvm, std::shared_ptr<const Template> tmpl, PoolOptions opts);
  ~ClonePool();
  ClonePool(const ClonePool&) = delete;
  ClonePool& operator=(const ClonePool&) = delete;

  // A ready shell, or one built now if none is ready. Thread-safe.
  Result<std::unique_ptr<Clone>> acquire();
  // Hands a finished clone to the background thread for destruction.
  void release(std::unique_ptr<Clone> c);
  // Blocks until min(n, target) shells are ready (or the pool failed to
  // build one).
  Result<> wait_ready(size_t n);

  size_t ready() const;
  uint64_t built() const { return built_.load(); }
  uint64_t built_on_demand() const { return on_demand_.load(); }

 private:
  void builder();
  void reaper();

  const Kvm& kvm_;
  std::shared_ptr<const Template> tmpl_;
  PoolOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the builder: below target
  std::condition_variable reap_cv_;  // wakes the reapers: something to destroy
  std::condition_variable ready_cv_;  // wakes wait_ready()
  std::deque<std::unique_ptr<Clone>> ready_;
  std::deque<std::unique_ptr<Clone>> graveyard_;
  std::optional<Error> last_error_;
  bool stop_ = false;
  std::atomic<uint64_t> built_{0}, on_demand_{0};
  std::thread builder_;
  std::vector<std::thread> reapers_;
};

}  // namespace vicvmm
