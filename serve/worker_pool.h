// Container workers kept ready, per template: each a `vicvmm __worker`
// process holding a clone shell over the template's memory, so starting a
// container costs a message and a KVM_RUN, not a VM build.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "serve/worker_protocol.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::serve {

// The parent's handle on one worker process.
class Worker {
 public:
  ~Worker();  // a worker never started is killed and reaped
  pid_t pid() const { return pid_; }
  int control() const { return control_.get(); }
  // What the worker spent between the start message and its answer.
  struct StartCost {
    uint64_t wall_ns = 0, cpu_ns = 0;  // cpu: every thread of the worker
  };
  // Sends the container (`exec_listener`: its exec socket, bound and
  // listening, else the worker binds spec.exec_socket itself); then
  // start_reply() reads whether the worker started its VM, with its own
  // account of the cost (a caller that must not block waits for control()
  // to turn readable in between).
  Result<> send_start(const ContainerSpec& spec, int log_fd, int stdin_fd = -1, int exec_listener = -1);
  Result<StartCost> start_reply(const std::string& id);
  // After the worker's process ended: reaps it (its exit status).
  int reap();

 private:
  friend class WorkerPool;
  Worker(pid_t pid, UniqueFd control) : pid_(pid), control_(std::move(control)) {}
  pid_t pid_;
  UniqueFd control_;
  bool started_ = false, reaped_ = false;
};

class WorkerPool {
 public:
  // `vicvmm_bin`: the binary to run as `vicvmm __worker DIR` (this one).
  WorkerPool(std::string vicvmm_bin, size_t ready_per_template);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A ready worker for the template directory; when none is ready, one is
  // started and awaited. Refills in the background.
  Result<std::unique_ptr<Worker>> acquire(const std::string& template_dir);
  // A ready worker, or null at once when none is (a refill is asked for).
  std::unique_ptr<Worker> try_acquire(const std::string& template_dir);
  // Starts keeping workers ready for this template (e.g. at serve start).
  void warm(const std::string& template_dir);
  size_t ready(const std::string& template_dir) const;

  // Starts one worker process and waits for its "ready".
  static Result<std::unique_ptr<Worker>> spawn(const std::string& vicvmm_bin, const std::string& template_dir);

 private:
  void refill();
  // The oldest ready worker for the template (the refiller is woken), or null.
  std::unique_ptr<Worker> take_locked(const std::string& template_dir);
  std::string bin_;
  size_t target_;
  mutable std::mutex mu_;
  std::condition_variable cv_;        // wakes the refiller
  std::condition_variable ready_cv_;  // wakes acquire(): a worker is ready or failed
  bool stop_ = false;
  std::map<std::string, std::deque<std::unique_ptr<Worker>>> ready_;
  std::map<std::string, size_t> wanted_;   // acquire() calls waiting, per template
  std::map<std::string, Error> failed_;    // the refiller's last failure, per template
  std::thread refiller_;
};

}  // namespace vicvmm::serve
