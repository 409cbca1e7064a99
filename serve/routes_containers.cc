// /containers: every container a VM of its own (containers.h), driven by the
// docker CLI: create, start, attach (hijacked), wait (headers at once, body
// at exit), logs [-f], ps, inspect, stop, kill, rm and stats.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/redirect_error.hpp>

#include "vmm/machine.h"
#include "serve/api_error.h"
#include "serve/container_filters.h"
#include "serve/containers.h"
#include "serve/routes.h"
#include "serve/vm_memory.h"
#include "serve/wakeup.h"

namespace vicvmm::serve {

using nlohmann::json;

namespace {

// Streams that follow a container wake when it changes; these are the
// safety net (a client gone quietly is noticed then) and the poll used
// when a log cannot be watched.
constexpr auto kSafetyNet = std::chrono::milliseconds(1000);
constexpr auto kPoll = std::chrono::milliseconds(20);
// Create bodies up to this size are parsed on the I/O thread (docker's are
// ~2 KiB; parsing 64 KiB takes well under a millisecond).
constexpr size_t kInlineBodyBytes = 64 << 10;

std::string rfc3339(uint64_t ns) {
  if (ns == 0) return "0001-01-01T00:00:00Z";
  time_t s = static_cast<time_t>(ns / 1'000'000'000ull);
  tm t{};
  gmtime_r(&s, &t);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  return fmt::format("{}.{:09d}Z", buf, ns % 1'000'000'000ull);
}

std::string human_duration(uint64_t ns) {
  uint64_t s = ns / 1'000'000'000ull;
  if (s < 1) return "Less than a second";
  if (s < 60) return fmt::format("{} seconds", s);
  if (s < 3600) return s < 120 ? "About a minute" : fmt::format("{} minutes", s / 60);
  return s < 7200 ? "About an hour" : fmt::format("{} hours", s / 3600);
}

std::string status_text(const Container& c) {
  if (c.state == "running") return "Up " + human_duration(realtime_ns() - c.started_ns);
  if (c.state == "exited")
    return fmt::format("Exited ({}) {} ago", c.exit_code, human_duration(realtime_ns() - c.finished_ns));
  return c.state == "starting" ? "Starting" : "Created";
}

std::string command_text(const Container& c) {
  std::string s;
  for (const auto& a : c.spec.argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

json ports_list(const Container& c) {
  json a = json::array();
  for (const auto& p : c.ports)
    a.push_back({{"IP", p.host_ip}, {"PrivatePort", p.guest_port}, {"PublicPort", p.host_port},
                 {"Type", p.udp ? "udp" : "tcp"}});
  return a;
}

json summary(const Container& c) {
  return {{"Id", c.id},
          {"Names", {"/" + c.name}},
          {"Image", c.image_ref},
          {"ImageID", "sha256:" + c.image_id},
          {"Command", command_text(c)},
          {"Created", c.created_ns / 1'000'000'000ull},
          {"Ports", ports_list(c)},
          {"Labels", c.config.contains("Labels") && c.config["Labels"].is_object() ? c.config["Labels"] : json::object()},
          {"State", c.state == "starting" ? "created" : c.state},
          {"Status", status_text(c)},
          {"HostConfig", {{"NetworkMode", "default"}}},
          {"NetworkSettings", {{"Networks", json::object()}}},
          {"Mounts", json::array()}};
}

json inspect(const Container& c) {
  json ports = json::object();
  json bindings = json::object();
  for (const auto& p : c.ports) {
    std::string key = fmt::format("{}/{}", p.guest_port, p.udp ? "udp" : "tcp");
    json b = {{"HostIp", p.host_ip}, {"HostPort", std::to_string(p.host_port)}};
    ports[key].push_back(b);
    bindings[key].push_back(b);
  }
  json config = c.config;
  config["Hostname"] = c.spec.hostname;
  config["Env"] = c.spec.env;
  config["WorkingDir"] = c.spec.workdir;
  config["User"] = c.spec.user;
  config["Tty"] = c.spec.tty;
  if (!config.contains("Cmd")) config["Cmd"] = nullptr;
  config.erase("HostConfig");
  const bool running = c.state == "running";
  json path = c.spec.argv.empty() ? json("") : json(c.spec.argv.front());
  json args = json::array();
  for (size_t i = 1; i < c.spec.argv.size(); ++i) args.push_back(c.spec.argv[i]);
  return {{"Id", c.id},
          {"Created", rfc3339(c.created_ns)},
          {"Path", path},
          {"Args", args},
          {"State",
           {{"Status", c.state == "starting" ? "created" : c.state},
            {"Running", running},
            {"Paused", false},
            {"Restarting", false},
            {"OOMKilled", false},
            {"Dead", false},
            {"Pid", running ? c.pid : 0},
            {"ExitCode", c.exit_code},
            {"Error", c.error},
            {"StartedAt", rfc3339(c.started_ns)},
            {"FinishedAt", rfc3339(c.finished_ns)}}},
          {"Image", "sha256:" + c.image_id},
          {"Name", "/" + c.name},
          {"RestartCount", 0},
          {"Driver", "erofs"},
          {"Platform", "linux"},
          {"HostConfig", {{"AutoRemove", c.auto_remove}, {"PortBindings", bindings}, {"NetworkMode", "default"}}},
          {"Config", config},
          {"NetworkSettings", {{"Ports", ports}, {"IPAddress", "10.0.2.15"}, {"Networks", json::object()}}},
          {"Mounts", json::array()},
          {"VicVmm", {{"Runtime", "vicvmm: a KVM microVM per container"}, {"ImageDisk", c.spec.image_disk}, {"Template", c.spec.template_dir}}}};
}

// A container's log as it grows: the file kept open (it is only ever
// appended to), read from where the last read ended.
class LogReader {
 public:
  explicit LogReader(std::string path) : path_(std::move(path)) {}
  // What was appended since the last call (at most 1 MiB at a time).
  std::string more() {
    std::string out;
    if (!fd_) fd_ = UniqueFd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd_ || ::fstat(fd_.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) <= offset_) return out;
    out.resize(std::min<uint64_t>(static_cast<uint64_t>(st.st_size) - offset_, 1u << 20));
    ssize_t n = ::pread(fd_.get(), out.data(), out.size(), static_cast<off_t>(offset_));
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    offset_ += out.size();
    return out;
  }
  // Only what comes from now on: the offset moves to the end, nothing is read.
  void skip_to_end() {
    if (!fd_) fd_ = UniqueFd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (fd_ && ::fstat(fd_.get(), &st) == 0) offset_ = static_cast<uint64_t>(st.st_size);
  }

 private:
  std::string path_;
  UniqueFd fd_;
  uint64_t offset_ = 0;
};

// Woken by the container's state changes and, with `log`, by its log
// growing; `timeout` is the safety net (and the poll when inotify fails).
struct Follow {
  std::shared_ptr<Wakeup> wake;
  ContainerManager::Subscription sub;
  std::chrono::milliseconds timeout;

  static asio::awaitable<Follow> make(const ContainerManager& m, const std::string& log = "") {
    auto wake = Wakeup::make(co_await asio::this_coro::executor);
    auto sub = m.subscribe([weak = std::weak_ptr<Wakeup>(wake)] {
      if (auto w = weak.lock()) w->notify();
    });
    const bool watched = log.empty() || wake->watch_file(log).has_value();
    co_return Follow{wake, std::move(sub), watched ? kSafetyNet : kPoll};
  }
  asio::awaitable<void> wait() { co_await wake->wait(timeout); }
};

// Keeps whole frames of the wanted streams (non-TTY logs); a partial frame
// at the end waits in `carry` for the rest.
std::string filter_frames(std::string& carry, std::string more, bool want_out, bool want_err) {
  carry += more;
  std::string out;
  size_t pos = 0;
  while (carry.size() - pos >= 8) {
    uint32_t n = (static_cast<uint32_t>(static_cast<uint8_t>(carry[pos + 4])) << 24) |
                 (static_cast<uint32_t>(static_cast<uint8_t>(carry[pos + 5])) << 16) |
                 (static_cast<uint32_t>(static_cast<uint8_t>(carry[pos + 6])) << 8) |
                 static_cast<uint32_t>(static_cast<uint8_t>(carry[pos + 7]));
    if (carry.size() - pos - 8 < n) break;
    bool is_err = carry[pos] == 2;
    if (is_err ? want_err : want_out) out.append(carry, pos, 8 + n);
    pos += 8 + n;
  }
  carry.erase(0, pos);
  return out;
}

// Removed, or stopped after `since` (or already stopped then): a stream
// that follows its output can end.
bool stopped_since(const ContainerManager& m, const std::string& id, uint64_t since, bool was_exited) {
  auto c = m.status(id);
  return !c || (c->state == "exited" && (was_exited || c->finished_ns >= since));
}

// Client -> the container's stdin until the client half-closes its side
// (then the container reads EOF) or goes away. Parameters by value: they
// live in the coroutine's frame.
asio::awaitable<void> pump_stdin(std::shared_ptr<Socket> sock, std::shared_ptr<asio::posix::stream_descriptor> pipe,
                                 std::string pending) {
  boost::system::error_code ec;
  if (!pending.empty())
    co_await asio::async_write(*pipe, asio::buffer(pending), asio::redirect_error(asio::use_awaitable, ec));
  std::vector<char> buf(16384);
  while (!ec) {
    size_t n = co_await sock->async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec || n == 0) break;
    co_await asio::async_write(*pipe, asio::buffer(buf.data(), n), asio::redirect_error(asio::use_awaitable, ec));
  }
  boost::system::error_code ignored;
  pipe->close(ignored);
}

}  // namespace

void add_container_routes(Router& r, const Context& ctx) {
  ContainerManager* m = ctx.containers;
  if (!m) {  // serve without a base template: an honest empty list
    r.add(http::verb::get, "/containers/json", [](Request&, Connection&) -> asio::awaitable<Response> {
      co_return json_response(json::array());
    });
    return;
  }

  r.add(http::verb::get, "/containers/json", [m](Request& req, Connection&) -> asio::awaitable<Response> {
    const bool all = query_flag(req, "all");
    auto filters = ContainerFilters::parse(req.query.count("filters") ? req.query["filters"] : "");
    if (!filters) co_return error_response(400, filters.error().message);
    const auto containers = m->list();
    if (auto resolved = filters->resolve_references(containers); !resolved)
      co_return error_response(404, resolved.error().message);
    json out = json::array();
    for (const auto& c : containers)
      if ((all || filters->implies_all() || c.state == "running") && filters->matches(c)) out.push_back(summary(c));
    co_return json_response(out);
  });

  // Create and start run on the I/O thread when they need no waiting (the
  // image's disk built, a directory and a worker ready): a hop to the pool
  // and back cost more CPU (~0.12 ms here, in wake-ups) than a create.
  // Anything that would wait goes to the pool.
  r.add(http::verb::post, "/containers/create", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string name = req.query.count("name") ? req.query["name"] : "";
    auto create = [m, &body_text = req.body, name](bool may_block) -> Result<std::string> {
      json body = json::parse(body_text, nullptr, false);
      if (body.is_discarded() || !body.is_object()) return api_err(EINVAL, "the request body is not a JSON object");
      return m->create(std::move(body), name, may_block);
    };
    // A large body is parsed on the pool: it would hold up every connection.
    auto id = req.body.size() <= kInlineBodyBytes ? conn.counted([&] { return create(false); })
                                                  : api_err(EAGAIN, "a large body");
    if (!id && id.error().sys_errno == EAGAIN) {
      auto job = [&create] { return create(true); };
      id = co_await conn.blocking(job);
    }
    if (!id) co_return api_error(id.error());
    co_return json_response(json{{"Id", *id}, {"Warnings", json::array()}}, 201);
  });

  r.add(http::verb::post, "/containers/{id}/start", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["id"];
    auto pending = conn.counted([&] { return m->begin_start(ref, /*may_wait=*/false); });
    if (!pending && pending.error().sys_errno == EAGAIN) {  // no worker ready: wait for one on the pool
      auto job = [m, ref] { return m->start(ref); };
      auto started = co_await conn.blocking(job);
      if (!started) co_return api_error(started.error());
      co_return Response{204, "text/plain", "", {}};
    }
    if (!pending) co_return api_error(pending.error());
    if (!pending->worker) co_return Response{304, "text/plain", "", {}};
    {
      // The worker's answer, awaited without blocking this thread.
      asio::posix::stream_descriptor control(co_await asio::this_coro::executor, pending->worker->control());
      boost::system::error_code ec;
      co_await control.async_wait(asio::posix::stream_descriptor::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      control.release();  // the worker's own descriptor
    }
    auto started = conn.counted([&] { return m->finish_start(*pending); });
    if (!started) co_return api_error(started.error());
    co_return Response{204, "text/plain", "", {}};
  });

  r.add(http::verb::post, "/containers/{id}/wait", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    auto c = m->status_of(req.params["id"]);
    if (!c) co_return api_error(c.error());
    const std::string id = c->id;
    const std::string condition = req.query.count("condition") ? req.query["condition"] : "not-running";
    const uint64_t asked = realtime_ns();
    // Headers now: `docker run` starts the container only once it has them.
    if (!co_await conn.begin_stream(200, "application/json")) co_return Response{};
    int code = c->exit_code;
    std::string error;
    Follow follow = co_await Follow::make(*m);
    for (;;) {
      auto now = m->status(id);
      if (!now) {
        if (auto removed = m->removed_exit(id)) code = *removed;
        if (condition == "removed") break;
        error = "the container was removed";
        break;
      }
      code = now->exit_code;
      error = now->error;
      const bool stopped = now->state == "exited" || now->state == "created";
      if (condition == "not-running" && stopped && now->state != "starting") break;
      if (condition == "next-exit" && now->state == "exited" && now->finished_ns >= asked) break;
      if (conn.peer_closed()) co_return Response{};  // e.g. `docker run -d`, gone after printing the id
      co_await follow.wait();
    }
    json result = {{"StatusCode", code}, {"Error", error.empty() ? json(nullptr) : json{{"Message", error}}}};
    std::string text = result.dump() + "\n";
    co_await conn.write(text);
    co_return Response{};
  });

  // Output from now on, until the container stops: the raw stream docker
  // expects (framed unless the container has a TTY). Input from the client
  // is not read: clones have no stdin yet (`-i` gets EOF), and a client's
  // half-close never ends the output.
  r.add(http::verb::post, "/containers/{id}/attach", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    auto c = m->status_of(req.params["id"]);
    if (!c) co_return api_error(c.error());
    const std::string id = c->id, path = m->log_path(id);
    const bool want_out = query_flag(req, "stdout"), want_err = query_flag(req, "stderr");
    const uint64_t since = realtime_ns();
    const bool was_exited = c->state == "exited";
    Follow follow = co_await Follow::make(*m, path);  // before the first read: no write unseen
    LogReader log(path);
    if (c->state == "running" || was_exited) log.skip_to_end();  // only what comes next
    UniqueFd input = query_flag(req, "stdin") ? m->take_stdin(id) : UniqueFd();
    auto hijacked = co_await conn.hijack("application/vnd.docker.raw-stream");
    if (!hijacked) co_return Response{};
    auto shared = std::make_shared<Socket>(std::move(hijacked->socket));
    Socket& sock = *shared;
    if (input) {
      auto executor = co_await asio::this_coro::executor;
      auto pipe = std::make_shared<asio::posix::stream_descriptor>(executor, input.release());
      asio::co_spawn(executor, pump_stdin(shared, pipe, hijacked->pending), asio::detached);
    }
    std::string carry;
    for (;;) {
      // The state first: the worker completes the log before it records
      // the exit, so once we see the exit, one more read has everything.
      const bool over = stopped_since(*m, id, since, was_exited);
      std::string more = log.more();
      std::string out = c->tty ? more : filter_frames(carry, more, want_out, want_err);
      if (!out.empty()) {
        boost::system::error_code ec;
        co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;  // the client went away
      }
      if (more.empty()) {
        if (over) break;
        co_await follow.wait();
      }
    }
    boost::system::error_code ec;
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    co_return Response{};
  });

  r.add(http::verb::get, "/containers/{id}/logs", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    auto c = m->get(req.params["id"]);
    if (!c) co_return api_error(c.error());
    const std::string id = c->id, path = m->log_path(id);
    const bool follow = query_flag(req, "follow");
    const bool want_out = query_flag(req, "stdout"), want_err = query_flag(req, "stderr");
    if (!want_out && !want_err) co_return error_response(400, "You must choose at least one stream");
    if (!co_await conn.begin_stream(200, "application/vnd.docker.raw-stream")) co_return Response{};
    const uint64_t since = realtime_ns();
    const bool was_exited = c->state == "exited";
    std::optional<Follow> follower;
    if (follow) follower.emplace(co_await Follow::make(*m, path));
    LogReader log(path);
    std::string carry;
    for (;;) {
      const bool done = !follow || stopped_since(*m, id, since, was_exited);
      std::string more = log.more();
      std::string out = c->spec.tty ? more : filter_frames(carry, more, want_out, want_err);
      if (!out.empty() && !co_await conn.write(out)) co_return Response{};
      if (more.empty()) {
        if (done || conn.peer_closed()) break;
        co_await follower->wait();
      }
    }
    co_return Response{};
  });

  r.add(http::verb::post, "/containers/{id}/resize", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    unsigned h = static_cast<unsigned>(std::strtoul(req.query["h"].c_str(), nullptr, 10));
    unsigned w = static_cast<unsigned>(std::strtoul(req.query["w"].c_str(), nullptr, 10));
    if (h == 0 || w == 0 || h > 0xffff || w > 0xffff) co_return error_response(400, "resize: h and w must be 1-65535");
    std::string ref = req.params["id"];
    auto job = [m, ref, h, w] { return m->resize(ref, h, w); };
    auto resized = co_await conn.blocking(job);
    if (!resized) co_return api_error(resized.error());
    co_return Response{200, "text/plain", "", {}};
  });

  r.add(http::verb::get, "/containers/{id}/json", [m](Request& req, Connection&) -> asio::awaitable<Response> {
    auto c = m->get(req.params["id"]);
    if (!c) co_return api_error(c.error());
    co_return json_response(inspect(*c));
  });

  r.add(http::verb::post, "/containers/{id}/stop", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["id"];
    auto c = m->get(ref);
    if (!c) co_return api_error(c.error());
    if (c->state != "running") co_return Response{304, "text/plain", "", {}};
    int grace = 10;
    if (req.query.count("t")) grace = std::atoi(req.query["t"].c_str());
    auto job = [m, ref, grace] { return m->stop(ref, std::chrono::seconds(std::clamp(grace, 0, 600))); };
    auto stopped = co_await conn.blocking(job);
    if (!stopped) co_return api_error(stopped.error());
    co_return Response{204, "text/plain", "", {}};
  });

  r.add(http::verb::post, "/containers/{id}/kill", [m](Request& req, Connection&) -> asio::awaitable<Response> {
    std::string sig = req.query.count("signal") ? req.query["signal"] : "SIGKILL";
    int signal = sig == "SIGKILL" || sig == "KILL" || sig == "9" ? SIGKILL : SIGTERM;
    auto killed = m->kill(req.params["id"], signal);
    if (!killed) co_return api_error(killed.error());
    co_return Response{204, "text/plain", "", {}};
  });

  r.add(http::verb::delete_, "/containers/{id}", [m](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["id"];
    bool force = query_flag(req, "force");
    auto job = [m, ref, force] { return m->remove(ref, force); };
    auto removed = co_await conn.blocking(job);
    if (!removed) co_return api_error(removed.error());
    co_return Response{204, "text/plain", "", {}};
  });

  // docker stats --no-stream: memory is the container VMM's private memory
  // (pages its VM wrote, not those it still shares with the template).
  r.add(http::verb::get, "/containers/{id}/stats", [m](Request& req, Connection&) -> asio::awaitable<Response> {
    auto c = m->get(req.params["id"]);
    if (!c) co_return api_error(c.error());
    // What this container costs alone: its private pages and its kernel memory.
    VmMemory vm = c->state == "running" ? measure_vm_memory(c->pid) : VmMemory{};
    uint64_t mem = vm.private_bytes + vm.kernel_bytes.value_or(0);
    uint64_t cpu_ns = 0;
    if (c->state == "running") {
      // utime + stime of the VMM process (all its threads), in clock ticks.
      std::string stat_path = fmt::format("/proc/{}/stat", c->pid);
      UniqueFd fd(::open(stat_path.c_str(), O_RDONLY | O_CLOEXEC));
      char buf[1024] = {};
      if (fd && ::read(fd.get(), buf, sizeof buf - 1) > 0) {
        const char* p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) == 2)
          cpu_ns = (utime + stime) * (1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
      }
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    json j = {{"read", rfc3339(realtime_ns())},
              {"preread", "0001-01-01T00:00:00Z"},
              {"id", c->id},
              {"name", "/" + c->name},
              {"pids_stats", {{"current", c->state == "running" ? 1 : 0}}},
              {"memory_stats", {{"usage", mem}, {"limit", static_cast<uint64_t>(pages) * static_cast<uint64_t>(page)},
                                {"stats", json::object()}}},
              {"cpu_stats", {{"cpu_usage", {{"total_usage", cpu_ns}}}, {"system_cpu_usage", realtime_ns()},
                             {"online_cpus", sysconf(_SC_NPROCESSORS_ONLN)}}},
              {"precpu_stats", {{"cpu_usage", {{"total_usage", 0}}}, {"system_cpu_usage", 0}}},
              {"networks", json::object()},
              {"blkio_stats", json::object()}};
    co_return json_response(j);
  });
}

}  // namespace vicvmm::serve
