// A coroutine's wait until something it follows may have changed: a
// container's state (notify(), from ContainerManager::subscribe) or a file
// written by another process (inotify), with a timeout as the safety net.
// `docker run` holds an attach and a wait open for the container's whole
// life, `docker logs -f` as long as it likes: polling them every 20 ms cost
// more host CPU than the create and the start together, and up to 20 ms of
// delay at the container's exit.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "vmm/result.h"

namespace vicvmm::serve {

class Wakeup : public std::enable_shared_from_this<Wakeup> {
 public:
  // On the executor of the coroutine that waits (serve's single I/O thread).
  static std::shared_ptr<Wakeup> make(boost::asio::any_io_executor executor);

  // From any thread: the current wait, or the next, returns.
  void notify();
  // Wakes the waiter when `path` is written. Fails (the caller then waits
  // with a short timeout instead) when inotify cannot be had, e.g. at the
  // per-user limit of inotify instances (fs.inotify.max_user_instances).
  Result<> watch_file(const std::string& path);
  // Returns at a notify(), a write to the watched file, or after `timeout`.
  boost::asio::awaitable<void> wait(std::chrono::milliseconds timeout);

  explicit Wakeup(boost::asio::any_io_executor executor) : timer_(executor) {}

 private:
  void arm_inotify();

  boost::asio::steady_timer timer_;
  std::atomic<bool> fired_{false};
  std::unique_ptr<boost::asio::posix::stream_descriptor> inotify_;
  bool inotify_armed_ = false;
};

}  // namespace vicvmm::serve
