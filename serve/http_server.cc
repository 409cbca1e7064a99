#include "serve/http_server.h"

#include <grp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "vmm/seccomp/seccomp.h"
#include "vmm/unique_fd.h"

namespace vicvmm::serve {

namespace {

using asio::use_awaitable;
using Clock = Connection::Clock;
using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

std::string error_json(std::string_view message) {
  return nlohmann::json{{"message", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// The co_spawn completion: a coroutine that still throws (bad_alloc) ends
// its own connection, never the server.
void ignore_exception(std::exception_ptr) {}

// Whether something accepts connections on the Unix socket `path`.
bool unix_socket_answers(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return false;
  std::copy(path.begin(), path.end(), sa.sun_path);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
}

Result<gid_t> group_id(const std::string& name) {
  std::vector<char> buf(16384);
  group gr{}, *res = nullptr;
  int e = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res);
  if (e != 0) return err("--group {}: {}", name, std::strerror(e));
  if (!res) {
    // A number names a gid directly, as with chown.
    if (!name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return static_cast<gid_t>(std::stoul(name));
    return err("--group {}: no such group", name);
  }
  return res->gr_gid;
}

// "127.0.0.1:2375", "[::1]:2375", "localhost:2375": loopback only, since the
// API is root on this host with no authentication.
Result<asio::ip::tcp::endpoint> parse_loopback(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return err("--http {}: expected ADDR:PORT (e.g. 127.0.0.1:2375)", text);
  std::string host = text.substr(0, colon), port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  unsigned long port = 0;
  bool digits = !port_text.empty() && port_text.size() <= 5 &&
                std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) port = std::stoul(port_text);
  if (!digits || port == 0 || port > 65535) return err("--http {}: bad port '{}'", text, port_text);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return err("--http {}: '{}' is not an IP address", text, host);
  if (!addr.is_loopback())
    return err("--http {}: {} is not a loopback address; the API has no authentication, so vicvmm serves TCP only "
               "on 127.0.0.0/8 or ::1",
               text, host);
  return asio::ip::tcp::endpoint(addr, static_cast<unsigned short>(port));
}

bool client_gone(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::operation_aborted || ec == asio::error::broken_pipe || ec == asio::error::bad_descriptor ||
         ec == http::error::partial_message;
}

}  // namespace

struct Server::Listener {
  explicit Listener(asio::io_context& io) : acceptor(io) {}
  Acceptor acceptor;
  std::string unix_path;  // removed at shutdown
  std::string name;       // for messages
};

// ---- Connection ----

Connection::Connection(Socket socket, Server& server) : socket_(std::move(socket)), server_(server) {
  // A request and its JSON body in one read (beast starts at 512 bytes).
  buffer_.reserve(16 << 10);
}

void Connection::arm(Clock::duration d) {
  deadline_ = Clock::now() + d;
  server_.ensure_sweep();
}

void Connection::disarm() { deadline_ = Clock::time_point::max(); }

asio::awaitable<bool> Connection::begin_stream(unsigned status, std::string_view content_type) {
  if (state_ != State::kIdle) co_return false;
  state_ = State::kStreaming;
  status_ = status;
  http::response<http::empty_body> res{static_cast<http::status>(status), 11};
  for (const auto& [k, v] : server_.options().headers) res.set(k, v);
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.keep_alive(keep_alive_);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  beast::error_code ec;
  arm(server_.options().idle_timeout);
  co_await http::async_write_header(socket_, sr, asio::redirect_error(use_awaitable, ec));
  disarm();
  if (ec) keep_alive_ = false;
  co_return !ec;
}

asio::awaitable<bool> Connection::write(std::string_view data) {
  if (state_ != State::kStreaming || !socket_.is_open()) co_return false;
  if (data.empty()) co_return true;  // an empty chunk would end the body
  beast::error_code ec;
  arm(server_.options().idle_timeout);
  co_await asio::async_write(socket_, http::make_chunk(asio::buffer(data.data(), data.size())),
                             asio::redirect_error(use_awaitable, ec));
  disarm();
  if (ec) keep_alive_ = false;
  co_return !ec;
}

asio::awaitable<bool> Connection::finish() {
  if (state_ != State::kStreaming || !socket_.is_open()) co_return false;
  state_ = State::kStreamDone;
  beast::error_code ec;
  arm(server_.options().idle_timeout);
  co_await asio::async_write(socket_, http::make_chunk_last(), asio::redirect_error(use_awaitable, ec));
  disarm();
  if (ec) keep_alive_ = false;
  co_return !ec;
}

bool Connection::peer_closed() {
  if (!socket_.is_open()) return true;
  char b;
  ssize_t n = ::recv(socket_.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  // 0: an orderly close; a byte: more requests, still there; EAGAIN: quiet.
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

asio::awaitable<Result<Hijacked>> Connection::hijack(std::string_view content_type) {
  if (state_ != State::kIdle) co_return err("connection: response already started");
  std::string head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: " + std::string(content_type) + "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n";
  for (const auto& [k, v] : server_.options().headers) head += k + ": " + v + "\r\n";
  head += "\r\n";
  beast::error_code ec;
  arm(server_.options().idle_timeout);
  co_await asio::async_write(socket_, asio::buffer(head), asio::redirect_error(use_awaitable, ec));
  disarm();
  if (ec) co_return err("connection: writing 101 UPGRADED: {}", ec.message());
  state_ = State::kHijacked;
  status_ = 101;
  auto data = buffer_.data();
  std::string pending(static_cast<const char*>(data.data()), data.size());
  buffer_.consume(buffer_.size());
  co_return Hijacked{std::move(socket_), std::move(pending)};
}

// ---- Server ----

Server::Server(ServerOptions options, Dispatcher& dispatcher)
    : options_(std::move(options)), dispatcher_(dispatcher), pool_(std::max(1u, options_.pool_threads)) {}

Server::~Server() {
  pool_.join();
  for (auto& l : listeners_)
    if (!l->unix_path.empty()) ::unlink(l->unix_path.c_str());
}

Result<std::unique_ptr<Server>> Server::create(ServerOptions options, Dispatcher& dispatcher) {
  if (options.unix_path.empty() && options.tcp.empty()) return err("serve: no socket to listen on");
  std::unique_ptr<Server> s(new Server(std::move(options), dispatcher));
  const ServerOptions& o = s->options_;
  boost::system::error_code ec;

  if (!o.unix_path.empty()) {
    const std::string& path = o.unix_path;
    if (path.size() >= sizeof(sockaddr_un{}.sun_path)) return err("socket {}: path too long", path);
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code fec;
    if (!parent.empty()) std::filesystem::create_directories(parent, fec);
    if (fec) return err("socket {}: creating {}: {}", path, parent.string(), fec.message());
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return err("socket {}: exists and is not a socket", path);
      if (unix_socket_answers(path)) return err("socket {}: another server is listening on it", path);
      if (::unlink(path.c_str()) != 0) return sys_err("socket {}: removing the stale socket", path);
    }
    std::optional<gid_t> gid;
    if (!o.group.empty()) {
      VIC_ASSIGN(gid, group_id(o.group));
    }
    auto l = std::make_unique<Listener>(s->io_);
    l->name = "unix://" + path;
    asio::generic::stream_protocol::endpoint ep{asio::local::stream_protocol::endpoint(path)};
    l->acceptor.open(ep.protocol(), ec);
    if (!ec) l->acceptor.bind(ep, ec);
    if (ec) return err("socket {}: {}", path, ec.message());
    l->unix_path = path;
    s->listeners_.push_back(std::move(l));  // from here on the destructor removes the file
    // Bound but not listening yet: nobody can connect before mode and group are right.
    if (::chmod(path.c_str(), 0660) != 0) return sys_err("socket {}: chmod 0660", path);
    if (gid && ::chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0)
      return sys_err("socket {}: chown to group {}", path, o.group);
    s->listeners_.back()->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return err("socket {}: listen: {}", path, ec.message());
  }

  if (!o.tcp.empty()) {
    VIC_ASSIGN(asio::ip::tcp::endpoint tcp_ep, parse_loopback(o.tcp));
    auto l = std::make_unique<Listener>(s->io_);
    l->name = "tcp://" + o.tcp;
    asio::generic::stream_protocol::endpoint ep{tcp_ep};
    l->acceptor.open(ep.protocol(), ec);
    if (!ec) l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) l->acceptor.bind(ep, ec);
    if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return err("--http {}: {}", o.tcp, ec.message());
    s->listeners_.push_back(std::move(l));
  }
  return s;
}

Result<> confine_api_thread() { return seccomp::confine_current_thread(seccomp::ThreadKind::Api); }

Result<> confine_pool_thread() {
  thread_local bool named = false;
  if (!named) {
    prctl(PR_SET_NAME, "vicvmm-pool", 0, 0, 0);
    named = true;
  }
  return confine_api_thread();
}

Result<void> Server::run(bool stop_on_signals) {
  asio::signal_set signals(io_);
  if (stop_on_signals) {
    signals.add(SIGINT);
    signals.add(SIGTERM);
    signals.async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) do_stop();
    });
  }
  for (auto& l : listeners_) asio::co_spawn(io_, accept_loop(*l), ignore_exception);
  // This thread parses every request: from here on it holds the API
  // allow-list (the pool's threads take it with their first job).
  VIC_TRY(confine_api_thread());
  try {
    io_.run();
  } catch (const std::exception& e) {
    return err("serve: {}", e.what());
  }
  return {};
}

void Server::stop() {
  asio::post(io_, [this] { do_stop(); });
}

void Server::do_stop() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  for (auto& l : listeners_) {
    l->acceptor.close(ec);
    if (!l->unix_path.empty()) {
      ::unlink(l->unix_path.c_str());
      l->unix_path.clear();
    }
  }
  for (Connection* c : connections_) c->socket_.close(ec);
  // Work still on the pool (a load) finishes when the destructor joins it;
  // the store's writes are atomic either way.
  io_.stop();
}

asio::awaitable<void> Server::accept_loop(Listener& l) {
  for (;;) {
    beast::error_code ec;
    Socket sock = co_await l.acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (stopping_ || !l.acceptor.is_open()) co_return;
      if (options_.log) std::fprintf(stderr, "vicvmm serve: accept on %s: %s\n", l.name.c_str(), ec.message().c_str());
      // Out of fds and the like: back off instead of spinning.
      asio::steady_timer t(io_, std::chrono::milliseconds(100));
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    if (connections_.size() >= options_.max_connections) {
      sock.close(ec);  // over the cap: the client sees a closed connection and may retry
      continue;
    }
    auto c = std::make_shared<Connection>(std::move(sock), *this);
    asio::co_spawn(io_, session(c), ignore_exception);
  }
}

void Server::ensure_sweep() {
  if (sweeping_ || stopping_) return;
  sweeping_ = true;
  asio::co_spawn(io_, sweep(), ignore_exception);
}

asio::awaitable<void> Server::sweep() {
  asio::steady_timer timer(io_);
  for (;;) {
    timer.expires_after(kSweep);
    beast::error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    bool armed = false;
    const auto now = Clock::now();
    for (Connection* c : connections_) {
      if (c->deadline_ == Clock::time_point::max() || c->hijacked()) continue;
      if (now >= c->deadline_) {
        c->deadline_ = Clock::time_point::max();
        c->socket_.close(ec);  // the pending read or write ends with operation_aborted
      } else {
        armed = true;
      }
    }
    if (!armed || stopping_) break;
  }
  sweeping_ = false;
}

void Server::log(const Request& req, unsigned status, Clock::time_point start, uint64_t work_cpu_ns) const {
  if (!options_.log) return;
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::string target = req.target.size() > 200 ? req.target.substr(0, 200) + "..." : req.target;
  if (work_cpu_ns)
    std::fprintf(stderr, "%s %s %u %.1fms (CPU %.3fms)\n", req.method_name.c_str(), target.c_str(), status, ms,
                 work_cpu_ns / 1e6);
  else
    std::fprintf(stderr, "%s %s %u %.1fms\n", req.method_name.c_str(), target.c_str(), status, ms);
}

asio::awaitable<void> Server::reply(Connection& c, const Request* req, const Response& res, bool keep_alive) {
  http::response<http::string_body> r{static_cast<http::status>(res.status), 11};
  for (const auto& [k, v] : options_.headers) r.set(k, v);
  for (const auto& [k, v] : res.headers) r.set(k, v);
  if (!res.content_type.empty()) r.set(http::field::content_type, res.content_type);
  r.keep_alive(keep_alive);
  size_t length = res.body.size();
  if (!req || req->method != http::verb::head) r.body() = res.body;
  r.content_length(length);  // HEAD: the length GET would have had
  c.status_ = res.status;
  beast::error_code ec;
  c.arm(options_.idle_timeout);
  co_await http::async_write(c.socket_, r, asio::redirect_error(use_awaitable, ec));
  c.disarm();
  if (ec) c.keep_alive_ = false;
}

// After an error answered before the body was read: stop sending, then read
// (briefly, boundedly) what the client still sends, so closing does not
// reset the connection before it has read the answer.
asio::awaitable<void> Server::lingering_close(Connection& c) {
  beast::error_code ec;
  c.socket_.shutdown(asio::socket_base::shutdown_send, ec);
  c.arm(std::chrono::seconds(2));
  char sink[16384];
  size_t total = 0;
  while (!ec && total < (4u << 20)) {
    size_t n = co_await c.socket_.async_read_some(asio::buffer(sink), asio::redirect_error(use_awaitable, ec));
    total += n;
  }
  c.socket_.close(ec);
}

asio::awaitable<void> Server::session(std::shared_ptr<Connection> c) {
  connections_.push_back(c.get());
  try {
    while (!stopping_) {
      beast::error_code ec;
      http::request_parser<http::empty_body> head;
      head.header_limit(static_cast<std::uint32_t>(std::min<uint64_t>(options_.max_header_bytes, UINT32_MAX)));
      // Body limits depend on the route, checked below once the header is in.
      // (Not boost::none: Boost 1.74 compares a length against it as "greater".)
      head.body_limit(std::numeric_limits<std::uint64_t>::max());
      c->arm(options_.idle_timeout);
      co_await http::async_read_header(c->socket_, c->buffer_, head, asio::redirect_error(use_awaitable, ec));
      auto start = Clock::now();
      Request req;
      if (ec) {
        if (client_gone(ec) || !c->socket_.is_open()) break;
        unsigned status = ec == http::error::header_limit ? 431 : 400;
        req.method_name = "-";
        req.target = "-";
        Response bad{status, "application/json", error_json("bad request: " + ec.message()), {}};
        co_await reply(*c, nullptr, bad, false);
        log(req, status, start);
        co_await lingering_close(*c);
        break;
      }
      auto& h = head.get();
      req.method = h.method();
      req.method_name = std::string(h.method_string());
      req.target = std::string(h.target());
      req.headers = h.base();
      req.keep_alive = h.keep_alive();
      BodyMode mode = dispatcher_.body_mode(req.method, req.target);
      uint64_t limit = mode == BodyMode::kSpool ? options_.max_spool_bytes : options_.max_body_bytes;
      if (h.has_content_length() && head.content_length() && *head.content_length() > limit) {
        Response too_large{413, "application/json", error_json(fmt::format("request body is larger than {} bytes (limit)", limit)), {}};
        co_await reply(*c, &req, too_large, false);
        log(req, 413, start);
        co_await lingering_close(*c);
        break;
      }

      // The body: each read that makes progress pushes the deadline out, so
      // a big upload from a live client has all the time it needs.
      auto read_body = [&](auto& parser) -> asio::awaitable<beast::error_code> {
        beast::error_code rec;
        while (!parser.is_done()) {
          c->arm(options_.idle_timeout);
          co_await http::async_read_some(c->socket_, c->buffer_, parser, asio::redirect_error(use_awaitable, rec));
          if (rec) break;
        }
        co_return rec;
      };
      struct SpoolFile {
        std::string path;
        ~SpoolFile() {
          if (!path.empty()) ::unlink(path.c_str());
        }
      } spool;
      if (mode == BodyMode::kSpool) {
        http::request_parser<http::file_body> p{std::move(head)};
        p.body_limit(limit);
        std::string tmpl = options_.spool_dir + "/serve-body-XXXXXX";
        int fd = ::mkstemp(tmpl.data());
        if (fd < 0) {
          Response failed{500, "application/json",
                          error_json(fmt::format("spooling the request body in {}: {}", options_.spool_dir, std::strerror(errno))), {}};
          co_await reply(*c, &req, failed, false);
          log(req, 500, start);
          co_await lingering_close(*c);
          break;
        }
        ::close(fd);
        spool.path = tmpl;
        p.get().body().open(spool.path.c_str(), beast::file_mode::write, ec);
        if (!ec) ec = co_await read_body(p);
        p.get().body().close();
        req.body_file = spool.path;
        req.keep_alive = p.get().keep_alive();
      } else {
        http::request_parser<http::string_body> p{std::move(head)};
        p.body_limit(limit);
        ec = co_await read_body(p);
        req.body = std::move(p.get().body());
        req.keep_alive = p.get().keep_alive();
      }
      if (ec) {
        if (ec == http::error::body_limit) {
          Response too_large{413, "application/json", error_json(fmt::format("request body is larger than {} bytes (limit)", limit)), {}};
          co_await reply(*c, &req, too_large, false);
          log(req, 413, start);
          co_await lingering_close(*c);
        } else if (!client_gone(ec) && c->socket_.is_open()) {
          Response bad{400, "application/json", error_json("bad request: " + ec.message()), {}};
          co_await reply(*c, &req, bad, false);
          log(req, 400, start);
          co_await lingering_close(*c);
        } else {
          log(req, 499, start);  // the client went away mid-body (nginx's number for it)
        }
        break;
      }

      c->disarm();
      c->keep_alive_ = req.keep_alive;
      c->status_ = 0;
      c->state_ = Connection::State::kIdle;
      Response res;
      try {
        res = co_await dispatcher_.handle(req, *c);
      } catch (const std::exception& e) {
        res = {500, "application/json", error_json(fmt::format("internal error: {}", e.what())), {}};
      }
      if (c->hijacked()) {
        log(req, 101, start);
        break;
      }
      if (c->state_ == Connection::State::kStreaming) co_await c->finish();
      if (c->state_ == Connection::State::kIdle) co_await reply(*c, &req, res, c->keep_alive_);
      c->state_ = Connection::State::kIdle;
      log(req, c->status_, start, c->work_cpu_ns_.exchange(0));
      if (!c->keep_alive_ || !c->socket_.is_open()) break;
    }
  } catch (...) {
  }
  beast::error_code ec;
  if (!c->hijacked()) c->socket_.close(ec);
  c->disarm();
  std::erase(connections_, c.get());
}

}  // namespace vicvmm::serve
