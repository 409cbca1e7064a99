// The process's one I/O thread: an epoll loop that serves every device of
// every VM in this process (ioeventfd kicks, backend fds, completions), so
// a thousand clones in one process do not mean thousands of threads, and
// vCPU threads never wait on device I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t epoll_events)>;

  // The shared loop, started on first use and stopped at process exit.
  static EventLoop& shared();

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Result<> start();
  // Calls `handler` on the I/O thread whenever `fd` has `events`. Returns a
  // token for remove(). The fd stays the caller's.
  Result<uint64_t> add(int fd, uint32_t events, Handler handler);
  // After remove() returns, the handler is not running and never runs
  // again (a handler may remove itself).
  void remove(uint64_t token);

  size_t watched() const;
  // CPU time the I/O thread has used (ns; 0 before start()): the host cost
  // of serving every device, for --stats and the benchmarks.
  uint64_t thread_cpu_ns();
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Entry {
    int fd;
    Handler handler;
  };
  void run();

  UniqueFd epoll_;
  std::string start_error_;  // why shared() could not start the loop
  UniqueFd wake_;  // eventfd that ends the loop
  std::thread thread_;
  mutable std::mutex mu_;         // entries_
  std::mutex dispatch_mu_;        // held while a handler runs
  std::unordered_map<uint64_t, std::shared_ptr<Entry>> entries_;
  uint64_t next_token_ = 1;
};

}  // namespace vicvmm
