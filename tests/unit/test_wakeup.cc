// serve's Wakeup: a waiting coroutine returns at a notify() from another
// thread or a write to the watched file, not only at its timeout (which
// would still make every stream correct, just late: hence these checks).
#include <unistd.h>

#include <utility>  // before asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <thread>

#include "serve/wakeup.h"
#include "tests/subprocess.h"

using namespace vicvmm;
using namespace vicvmm::serve;
namespace asio = boost::asio;
using namespace std::chrono;

namespace {

// Far beyond any wake-up: a wait that ends before it was woken.
constexpr milliseconds kLong{30'000};

// Runs `body` as a coroutine on a fresh io_context until it finishes.
template <typename F>
void run_coroutine(F body) {
  asio::io_context io;
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await body();
        done = true;
      },
      asio::detached);
  io.run();
  REQUIRE(done);
}

}  // namespace

TEST_CASE("wakeup: notify from another thread ends the wait; an earlier notify is not lost", "[serve]") {
  run_coroutine([]() -> asio::awaitable<void> {
    auto wake = Wakeup::make(co_await asio::this_coro::executor);
    const auto t0 = steady_clock::now();
    std::thread notifier([wake] {
      std::this_thread::sleep_for(milliseconds(50));
      wake->notify();
    });
    co_await wake->wait(kLong);
    notifier.join();
    CHECK(steady_clock::now() - t0 < seconds(10));

    wake->notify();  // before the wait begins
    const auto t1 = steady_clock::now();
    co_await wake->wait(kLong);
    CHECK(steady_clock::now() - t1 < seconds(10));
  });
}

TEST_CASE("wakeup: a write to the watched file ends the wait; without one, the timeout does", "[serve]") {
  test::ScratchDir dir;
  const std::string log = dir / "log";
  std::ofstream(log) << "";
  run_coroutine([&]() -> asio::awaitable<void> {
    auto wake = Wakeup::make(co_await asio::this_coro::executor);
    REQUIRE(wake->watch_file(log));
    const auto t0 = steady_clock::now();
    std::thread writer([&] {
      std::this_thread::sleep_for(milliseconds(50));
      std::ofstream(log, std::ios::app) << "output\n";  // as the worker appends
    });
    co_await wake->wait(kLong);
    writer.join();
    CHECK(steady_clock::now() - t0 < seconds(10));

    // A quiet file and no notify: the wait lasts its timeout (once the
    // events of that write, its close among them, are taken).
    bool quiet = false;
    for (int i = 0; i < 5 && !quiet; ++i) {
      const auto t1 = steady_clock::now();
      co_await wake->wait(milliseconds(200));
      quiet = steady_clock::now() - t1 >= milliseconds(150);
    }
    CHECK(quiet);
  });
  asio::io_context io;
  CHECK_FALSE(Wakeup::make(io.get_executor())->watch_file(dir / "missing"));
}
