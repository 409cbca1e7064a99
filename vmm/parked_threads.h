// Threads that are started and confined once, then run one job after
// another. Starting a thread and installing a seccomp filter on it costs
// ~80 µs here (the kernel copies the filter for every thread); a clone's
// vCPUs must be running within tens of µs of the request, so the vCPU
// threads outlive the runs they serve and wait, parked, for the next.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/result.h"
#include "vmm/seccomp/seccomp.h"

namespace vicvmm {

class ParkedThreads {
 public:
  struct Worker;

  // One job on one thread; join() (or the destructor) waits for it to end
  // and parks the thread again.
  class Job {
   public:
    Job() = default;
    Job(Job&& o) noexcept : owner_(o.owner_), worker_(o.worker_) { o.worker_ = nullptr; }
    Job& operator=(Job&&) = delete;
    ~Job() { join(); }
    void join();
    // For signals (a vCPU kick); valid until join() returns.
    pthread_t native_handle() const;

   private:
    friend class ParkedThreads;
    Job(ParkedThreads* owner, Worker* worker) : owner_(owner), worker_(worker) {}
    ParkedThreads* owner_ = nullptr;
    Worker* worker_ = nullptr;
  };

  // Threads confined as `kind`; at most `max_parked` wait between jobs
  // (the rest exit when their job ends).
  ParkedThreads(seccomp::ThreadKind kind, size_t max_parked);
  ~ParkedThreads();
  ParkedThreads(const ParkedThreads&) = delete;
  ParkedThreads& operator=(const ParkedThreads&) = delete;

  // The process's vCPU threads (never destroyed: parked threads end with
  // the process).
  static ParkedThreads& vcpus();

  // Runs `body` on a parked thread, or on a new one when none fits: a
  // thread is reused only by callers under the same filter as the thread
  // that started it (a thread inherits its creator's filter) and while
  // seccomp is as enabled as it was when the thread confined itself.
  Result<Job> run(std::function<void()> body);

  // Starts threads until `count` are parked (ahead of the runs that will
  // want them: a pool, a serve worker holding a ready shell).
  Result<> prestart(size_t count);

  size_t parked() const;

 private:
  Result<Worker*> start_worker();
  void park(Worker* w);
  static void worker_main(Worker* w);

  const seccomp::ThreadKind kind_;
  const size_t max_parked_;
  mutable std::mutex mu_;
  std::vector<Worker*> parked_;  // idle, each waiting on its own condition
};

}  // namespace vicvmm
