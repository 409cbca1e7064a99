// An HTTP/1.1 server on a Unix socket (and optionally loopback TCP) for
// `vicvmm serve`: Boost.Beast on one asio io_context thread, blocking work
// (image loads, store calls) on a small thread pool.
//
// Each connection is one coroutine. A handler gets the Request and the
// Connection: it returns a Response, or streams one (chunked: `docker wait`,
// `logs -f`), or takes the socket over (`101 UPGRADED` for attach/exec).
// Every read and write has an inactivity deadline, so a slow or vanished
// client only ever costs its own connection. Deadlines are plain times
// that one sweep checks four times a second while any is set: a timer per
// connection, re-armed for each read and write, cost two syscalls and a
// coroutine wake-up per operation.
#pragma once

#include <atomic>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "vmm/machine.h"  // thread_cpu_ns
#include "vmm/result.h"

namespace vicvmm::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// Unix and TCP connections alike.
using Socket = asio::generic::stream_protocol::socket;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Where a request body goes: memory (JSON endpoints, capped small) or a temp
// file (image load/import: gigabytes, capped large).
enum class BodyMode { kMemory, kSpool };

struct Request {
  http::verb method = http::verb::unknown;
  std::string method_name;  // as sent
  std::string target;       // as sent: path and query
  http::fields headers;
  bool keep_alive = true;
  std::string body;       // BodyMode::kMemory
  std::string body_file;  // BodyMode::kSpool: removed once the handler returns
  // Filled by the router: the path without its /vN.NN prefix, the pattern's
  // parameters and the query, percent-decoded.
  std::string path;
  std::map<std::string, std::string> params;
  std::map<std::string, std::string> query;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;
};

// What a hijacking handler gets: the socket, and whatever the client sent
// after the request that the server had already read.
struct Hijacked {
  Socket socket;
  std::string pending;
};

class Server;

class Connection {
 public:
  using Clock = std::chrono::steady_clock;
  Connection(Socket socket, Server& server);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Streaming: the head (chunked transfer encoding) now, then pieces, then
  // the end. Each returns false once the client is gone; the handler should
  // stop then. The handler's returned Response is ignored after begin_stream.
  asio::awaitable<bool> begin_stream(unsigned status, std::string_view content_type);
  asio::awaitable<bool> write(std::string_view data);
  asio::awaitable<bool> finish();

  // Takes the socket over: writes docker's `101 UPGRADED` head (Upgrade: tcp,
  // the given Content-Type, e.g. application/vnd.docker.raw-stream) and hands
  // the socket out; the server forgets the connection.
  asio::awaitable<Result<Hijacked>> hijack(std::string_view content_type);

  // Runs `f` (returning a Result) on the server's thread pool and resumes
  // here with its value: store calls block on disks and flocks. An exception
  // from `f` becomes an error, never escaping. `f` is an lvalue (a named
  // lambda): GCC 12 destroys a class-type temporary in a co_await
  // expression twice (PR 99576), so no coroutine here takes one by value.
  template <class F>
  asio::awaitable<std::invoke_result_t<F&>> blocking(F& f);

  // Work a handler did on the I/O thread itself, for the request's log
  // line beside its blocking() jobs: `f` runs here, its CPU counted.
  template <class F>
  std::invoke_result_t<F&> counted(F&& f) {
    const uint64_t from = thread_cpu_ns();
    struct Add {
      std::atomic<uint64_t>& sum;
      uint64_t from;
      ~Add() { sum.fetch_add(thread_cpu_ns() - from); }
    } add{work_cpu_ns_, from};
    return f();
  }

  bool streaming() const { return state_ == State::kStreaming || state_ == State::kStreamDone; }
  bool hijacked() const { return state_ == State::kHijacked; }
  // The client closed its end (or the socket failed): a handler that
  // streams slowly (`docker wait`, `logs -f`) stops instead of polling on
  // for nobody. The docker CLI opens a wait for `run -d` and exits.
  bool peer_closed();

 private:
  friend class Server;
  enum class State { kIdle, kStreaming, kStreamDone, kHijacked };
  void arm(Clock::duration d);
  void disarm();
  asio::thread_pool& pool();

  Socket socket_;
  Server& server_;
  beast::flat_buffer buffer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  State state_ = State::kIdle;
  bool keep_alive_ = true;
  unsigned status_ = 0;  // for the log line
  std::atomic<uint64_t> work_cpu_ns_{0};  // CPU of this request's work (blocking() jobs, counted()), for the log line
};

struct ServerOptions {
  std::string unix_path;  // "" = no Unix socket
  std::string group;      // "" = leave the socket's group as created
  std::string tcp;        // "" or "ADDR:PORT" with a loopback ADDR ("[::1]:PORT" for IPv6)
  std::string spool_dir;  // where BodyMode::kSpool bodies go
  uint64_t max_header_bytes = 64 << 10;
  uint64_t max_body_bytes = 64ull << 20;
  uint64_t max_spool_bytes = 16ull << 30;
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};  // no progress reading or writing
  unsigned max_connections = 256;
  unsigned pool_threads = 2;
  bool log = true;     // one line per request on stderr
  HeaderList headers;  // on every response
};

// Decides where a request's body goes and answers it.
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual BodyMode body_mode(http::verb method, std::string_view target) const = 0;
  virtual asio::awaitable<Response> handle(Request& req, Connection& conn) = 0;
};

class Server {
 public:
  // Binds the listeners (replacing a stale Unix socket file only when
  // nothing answers on it) without serving yet.
  static Result<std::unique_ptr<Server>> create(ServerOptions options, Dispatcher& dispatcher);
  ~Server();  // removes the Unix socket file
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until stop(), or SIGINT/SIGTERM when `stop_on_signals`; then
  // stops accepting, closes every connection and removes the socket file.
  Result<void> run(bool stop_on_signals);
  void stop();  // from any thread

  const ServerOptions& options() const { return options_; }
  asio::thread_pool& pool() { return pool_; }

 private:
  friend class Connection;  // arm() starts the sweep
  struct Listener;
  Server(ServerOptions options, Dispatcher& dispatcher);
  asio::awaitable<void> accept_loop(Listener& l);
  asio::awaitable<void> session(std::shared_ptr<Connection> c);
  // Closes connections whose deadline passed, every kSweep while any has one.
  void ensure_sweep();
  asio::awaitable<void> sweep();
  static constexpr auto kSweep = std::chrono::milliseconds(250);
  asio::awaitable<void> reply(Connection& c, const Request* req, const Response& res, bool keep_alive);
  asio::awaitable<void> lingering_close(Connection& c);
  void do_stop();
  // One line per request: method, target, status, wall time and, when the
  // handler ran blocking work on the pool, that work's CPU time.
  void log(const Request& req, unsigned status, Connection::Clock::time_point start, uint64_t work_cpu_ns = 0) const;

  ServerOptions options_;
  Dispatcher& dispatcher_;
  asio::io_context io_{1};
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<Connection*> connections_;  // touched only on the io thread
  bool stopping_ = false;
  bool sweeping_ = false;
  // Last: destroyed (joined) first, while the io_context still exists.
  asio::thread_pool pool_;
};

inline asio::thread_pool& Connection::pool() { return server_.pool(); }

// Confines the calling thread to the API allow-list (vmm/seccomp), once.
Result<> confine_api_thread();
// The same for a thread of the pool, named vicvmm-pool first (top -H).
Result<> confine_pool_thread();

template <class F>
asio::awaitable<std::invoke_result_t<F&>> Connection::blocking(F& f) {
  using R = std::invoke_result_t<F&>;
  disarm();  // the work's duration is not the client's slowness
  auto& pool_ref = pool();
  auto* cpu_sum = &work_cpu_ns_;
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(R)>(
      [&pool_ref, &f, cpu_sum](auto handler) {
        auto ex = asio::get_associated_executor(handler);
        asio::post(pool_ref, [f, handler = std::move(handler), ex, cpu_sum]() mutable {
          R r = [&]() -> R {
            if (auto c = confine_pool_thread(); !c) return tl::unexpected(c.error());
            struct CountCpu {  // the caller awaits this job: the counter outlives it
              std::atomic<uint64_t>* sum;
              uint64_t from = thread_cpu_ns();
              ~CountCpu() { sum->fetch_add(thread_cpu_ns() - from); }
            } count{cpu_sum};
            try {
              return f();
            } catch (const std::exception& e) {
              return err("internal error: {}", e.what());
            } catch (...) {
              return err("internal error");
            }
          }();
          asio::post(ex, [handler = std::move(handler), r = std::move(r)]() mutable { std::move(handler)(std::move(r)); });
        });
      },
      asio::use_awaitable);
}

}  // namespace vicvmm::serve
