// docker exec: create, start (hijacked, or detached), resize, inspect. The
// process runs in the container's VM; its worker streams it straight to the
// client's socket, which serve hands over after the 101 (serve keeps its
// own copy open until it has recorded the exit, so a client that sees EOF
// and asks for the exit code always finds it).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/execs.h"
#include "serve/routes.h"

namespace vicvmm::serve {

using nlohmann::json;

namespace {

// Waits (without a thread) for the worker's exit message on `conn`.
asio::awaitable<void> await_exit(ExecManager* x, std::string id, UniqueFd conn) {
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, ::dup(conn.get()));
  for (;;) {
    boost::system::error_code ec;
    co_await d.async_wait(asio::posix::descriptor_base::wait_read, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      x->finish(id, -1);  // recorded as gone
      break;
    }
    if (x->finish(id, conn.get())) break;
  }
}

}  // namespace

void add_exec_routes(Router& r, const Context& ctx) {
  ExecManager* x = ctx.execs;
  if (!x) return;

  r.add(http::verb::post, "/containers/{id}/exec", [x](Request& req, Connection&) -> asio::awaitable<Response> {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) co_return error_response(400, "the request body is not a JSON object");
    auto id = x->create(req.params["id"], body);
    if (!id) co_return api_error(id.error());
    co_return json_response(json{{"Id", *id}}, 201);
  });

  r.add(http::verb::post, "/exec/{id}/start", [x](Request& req, Connection& conn) -> asio::awaitable<Response> {
    json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) co_return error_response(400, "the request body is not a JSON object");
    const std::string id = req.params["id"];
    auto before = x->inspect(id);
    if (!before) co_return api_error(before.error());
    if ((*before)["Running"].get<bool>() || !(*before)["ExitCode"].is_null())
      co_return error_response(409, fmt::format("Exec {} has already been started", id));
    auto executor = co_await asio::this_coro::executor;

    if (body.value("Detach", false)) {
      auto job = [x, id] { return x->start(id, -1); };
      auto worker = co_await conn.blocking(job);
      if (!worker) co_return api_error(worker.error());
      asio::co_spawn(executor, await_exit(x, id, std::move(*worker)), asio::detached);
      co_return Response{200, "application/json", "", {}};
    }

    auto hijacked = co_await conn.hijack("application/vnd.docker.raw-stream");
    if (!hijacked) co_return Response{};
    Socket sock = std::move(hijacked->socket);
    // The worker does blocking I/O on its copy; the socket's file status
    // is shared, so asio's non-blocking flag goes.
    int fd = sock.native_handle();
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    std::string pending = std::move(hijacked->pending);
    auto job = [x, id, fd, pending] { return x->start(id, fd, pending); };
    auto worker = co_await conn.blocking(job);
    if (!worker) {
      // The client is already streaming: say why on its stderr.
      std::string msg = frame(2, worker.error().message + "\n");
      if (!(*before)["ProcessConfig"]["tty"].get<bool>()) ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL);
      else ::send(fd, msg.data() + 8, msg.size() - 8, MSG_NOSIGNAL);
    } else {
      co_await await_exit(x, id, std::move(*worker));
    }
    boost::system::error_code ec;
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    sock.close(ec);
    co_return Response{};
  });

  r.add(http::verb::post, "/exec/{id}/resize", [x](Request& req, Connection&) -> asio::awaitable<Response> {
    unsigned h = static_cast<unsigned>(std::strtoul(req.query["h"].c_str(), nullptr, 10));
    unsigned w = static_cast<unsigned>(std::strtoul(req.query["w"].c_str(), nullptr, 10));
    if (h == 0 || w == 0 || h > 0xffff || w > 0xffff) co_return error_response(400, "resize: h and w must be 1-65535");
    auto resized = x->resize(req.params["id"], h, w);
    if (!resized) co_return api_error(resized.error());
    co_return Response{201, "text/plain", "", {}};
  });

  r.add(http::verb::get, "/exec/{id}/json", [x](Request& req, Connection&) -> asio::awaitable<Response> {
    auto j = x->inspect(req.params["id"]);
    if (!j) co_return api_error(j.error());
    co_return json_response(*j);
  });
}

}  // namespace vicvmm::serve
