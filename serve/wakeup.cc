#include "serve/wakeup.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace vicvmm::serve {

namespace asio = boost::asio;

std::shared_ptr<Wakeup> Wakeup::make(asio::any_io_executor executor) { return std::make_shared<Wakeup>(executor); }

void Wakeup::notify() {
  fired_.store(true);
  // The timer belongs to the I/O thread: cancelled there. A waiter that
  // has not begun its wait yet sees fired_ first (one thread runs both).
  asio::post(timer_.get_executor(), [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->timer_.cancel();
  });
}

Result<> Wakeup::watch_file(const std::string& path) {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return sys_err("watching {}: inotify", path);
  auto d = std::make_unique<asio::posix::stream_descriptor>(timer_.get_executor(), fd);
  if (::inotify_add_watch(fd, path.c_str(), IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF) < 0)
    return sys_err("watching {}: inotify", path);
  inotify_ = std::move(d);
  return {};
}

void Wakeup::arm_inotify() {
  if (!inotify_ || inotify_armed_) return;
  inotify_armed_ = true;
  // The descriptor's destructor cancels this; the handler then finds no
  // Wakeup (weak) and touches nothing.
  inotify_->async_wait(asio::posix::descriptor_base::wait_read, [weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (!self || ec) return;
    self->inotify_armed_ = false;
    char buf[4096];
    while (::read(self->inotify_->native_handle(), buf, sizeof buf) > 0) {
    }  // the events say only "written": what changed, the reader reads
    self->fired_.store(true);
    self->timer_.cancel();
  });
}

asio::awaitable<void> Wakeup::wait(std::chrono::milliseconds timeout) {
  arm_inotify();
  if (fired_.exchange(false)) co_return;
  timer_.expires_after(timeout);
  boost::system::error_code ec;
  co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  fired_.store(false);
}

}  // namespace vicvmm::serve
