// serve's HTTP server over a Unix socket: requests answered on a kept-alive
// connection, and the inactivity deadline closing a client that stalls
// (checked by the server's sweep, not a timer per connection).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "serve/router.h"

using namespace vicvmm;
using namespace vicvmm::serve;
namespace fs = std::filesystem;

namespace {

int connect_to(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

// Everything the server sends until it closes or `timeout` passes quietly.
std::string read_until_closed(int fd, std::chrono::milliseconds timeout, bool* closed) {
  std::string out;
  *closed = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return out;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

struct RunningServer {
  std::string dir, sock;
  Router router;
  std::unique_ptr<Server> server;
  std::thread thread;
  explicit RunningServer(std::chrono::milliseconds idle) {
    std::string t = fs::temp_directory_path().string() + "/vicvmm-http-XXXXXX";
    REQUIRE(mkdtemp(t.data()));
    dir = t;
    sock = dir + "/api.sock";
    router.add(http::verb::get, "/_ping", [](Request&, Connection&) -> asio::awaitable<Response> {
      co_return Response{200, "text/plain", "OK", {}};
    });
    ServerOptions o;
    o.unix_path = sock;
    o.spool_dir = dir;
    o.idle_timeout = idle;
    o.log = false;
    auto s = Server::create(o, router);
    REQUIRE(s.has_value());
    server = std::move(*s);
    thread = std::thread([this] { (void)server->run(false); });
  }
  ~RunningServer() {
    server->stop();
    thread.join();
    server.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

TEST_CASE("http server: requests on a kept-alive connection; a stalled client is closed after its deadline", "[serve]") {
  RunningServer s(std::chrono::milliseconds(600));

  int a = connect_to(s.sock);
  const std::string ping = "GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    REQUIRE(::send(a, ping.data(), ping.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(ping.size()));
    bool closed;
    std::string reply = read_until_closed(a, std::chrono::milliseconds(300), &closed);
    CHECK(reply.starts_with("HTTP/1.1 200 OK"));
    CHECK(reply.ends_with("\r\n\r\nOK"));
    CHECK_FALSE(closed);
  }

  // Half a request, then nothing: closed once the deadline has passed
  // (600 ms, checked every 250 ms), not before.
  int b = connect_to(s.sock);
  REQUIRE(::send(b, "GET /_pi", 8, MSG_NOSIGNAL) == 8);
  const auto t0 = std::chrono::steady_clock::now();
  bool closed;
  read_until_closed(b, std::chrono::milliseconds(5000), &closed);
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(closed);
  CHECK(waited >= std::chrono::milliseconds(550));
  CHECK(waited < std::chrono::milliseconds(3000));
  ::close(b);

  // The idle kept-alive connection was closed too (its wait for the next
  // request has the same deadline); a new one is served.
  read_until_closed(a, std::chrono::milliseconds(2000), &closed);
  CHECK(closed);
  ::close(a);
  int c = connect_to(s.sock);
  REQUIRE(::send(c, ping.data(), ping.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(ping.size()));
  CHECK(read_until_closed(c, std::chrono::milliseconds(1000), &closed).starts_with("HTTP/1.1 200 OK"));
  ::close(c);
}
