#include "serve/execs.h"

#include <sys/socket.h>
#include <unistd.h>

#include "image/container_spec.h"
#include "serve/api_error.h"
#include "serve/containers.h"
#include "vmm/machine.h"

namespace vicvmm::serve {

using nlohmann::json;

namespace {
// Docker's string-list fields: a list, or null.
Result<std::vector<std::string>> strings(const json& body, const char* key) {
  std::vector<std::string> out;
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_array()) return api_err(EINVAL, fmt::format("{} must be a list of strings", key));
  for (const auto& e : *it) {
    if (!e.is_string()) return api_err(EINVAL, fmt::format("{} must be a list of strings", key));
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<bool> flag(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) return api_err(EINVAL, fmt::format("{} must be a boolean", key));
  return it->get<bool>();
}

Result<std::string> text(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::string();
  if (!it->is_string()) return api_err(EINVAL, fmt::format("{} must be a string", key));
  return it->get<std::string>();
}
}  // namespace

Result<std::string> ExecManager::create(const std::string& container_ref, const json& body) {
  if (!body.is_object()) return api_err(EINVAL, "the request body is not a JSON object");
  VIC_ASSIGN(Container c, containers_.get(container_ref));
  if (c.state != "running") return api_err(EBUSY, fmt::format("Container {} is not running", c.id));
  ExecInstance e;
  VIC_ASSIGN(e.spec.argv, strings(body, "Cmd"));
  if (e.spec.argv.empty()) return api_err(EINVAL, "No exec command specified");
  VIC_ASSIGN(std::vector<std::string> env, strings(body, "Env"));
  // The container's environment, then the exec's own (docker's order).
  e.spec.env = image::merge_env(c.spec.env, env);
  VIC_ASSIGN(e.spec.user, text(body, "User"));
  VIC_ASSIGN(e.spec.workdir, text(body, "WorkingDir"));
  if (e.spec.user.empty()) e.spec.user = c.spec.user;
  if (e.spec.workdir.empty()) e.spec.workdir = c.spec.workdir;
  VIC_ASSIGN(e.spec.tty, flag(body, "Tty"));
  VIC_ASSIGN(e.spec.open_stdin, flag(body, "AttachStdin"));
  VIC_ASSIGN(e.spec.attach_stdout, flag(body, "AttachStdout"));
  VIC_ASSIGN(e.spec.attach_stderr, flag(body, "AttachStderr"));
  e.id = random_hex(32);
  if (e.id.empty()) return sys_err("exec id: getrandom");
  e.container_id = c.id;
  e.created_ns = realtime_ns();
  std::lock_guard lock(mu_);
  prune_locked();
  if (execs_.size() >= kMaxInstances) return api_err(EBUSY, "too many exec instances at once");
  std::string id = e.id;
  execs_[id] = std::move(e);
  return id;
}

void ExecManager::prune_locked() {
  // The oldest finished ones go first; running ones stay.
  while (execs_.size() >= kMaxInstances) {
    auto oldest = execs_.end();
    for (auto it = execs_.begin(); it != execs_.end(); ++it)
      if (!it->second.running && (oldest == execs_.end() || it->second.created_ns < oldest->second.created_ns))
        oldest = it;
    if (oldest == execs_.end()) return;
    execs_.erase(oldest);
  }
}

Result<UniqueFd> ExecManager::start(const std::string& id, int stream, const std::string& pending) {
  ExecSpec spec;
  std::string container_id;
  {
    std::lock_guard lock(mu_);
    auto it = execs_.find(id);
    if (it == execs_.end()) return api_err(ENOENT, fmt::format("No such exec instance: {}", id));
    if (it->second.started) return api_err(EBUSY, fmt::format("Exec {} has already been started", id));
    it->second.started = true;
    spec = it->second.spec;
    container_id = it->second.container_id;
  }
  auto fail = [&](const Error& e) {
    std::lock_guard lock(mu_);
    auto it = execs_.find(id);
    if (it != execs_.end()) {
      it->second.exit_code = 126;
      it->second.error = e.message;
    }
    return tl::unexpected(e);
  };
  auto c = containers_.get(container_id);
  if (!c) return fail(c.error());
  if (c->state != "running") return fail(Error{fmt::format("Container {} is not running", container_id), EBUSY});
  auto conn = connect_seqpacket(c->spec.exec_socket);
  if (!conn) return fail(Error{fmt::format("container {}: its VM takes no exec requests ({})", container_id.substr(0, 12), conn.error().message), EBUSY});
  std::vector<int> fds;
  if (stream >= 0) fds.push_back(stream);
  json msg = {{"exec", to_json(spec)}};
  if (!pending.empty() && stream >= 0) {
    std::string hex;
    for (unsigned char ch : pending) hex += fmt::format("{:02x}", ch);
    msg["stdin_hex"] = hex;
  }
  if (auto r = send_message(conn->get(), msg, fds); !r) return fail(r.error());
  // A guest whose agent has no exec channel never answers: do not wait forever.
  timeval tv{30, 0};
  setsockopt(conn->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto reply = recv_message(conn->get(), "the container's worker");
  timeval none{0, 0};
  setsockopt(conn->get(), SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  if (!reply && (reply.error().sys_errno == EAGAIN || reply.error().sys_errno == EWOULDBLOCK))
    return fail(Error{fmt::format("container {}: its VM did not answer the exec request in 30 s (a template made by "
                                  "an older vicvmm has no exec channel: create it again)",
                                  container_id.substr(0, 12)),
                      EBUSY});
  if (!reply) return fail(reply.error());
  if (!reply->body.contains("started")) {
    auto e = reply->body.find("error");
    return fail(Error{e != reply->body.end() && e->is_string() ? e->get<std::string>() : "the exec did not start", EINVAL});
  }
  std::lock_guard lock(mu_);
  auto it = execs_.find(id);
  if (it != execs_.end()) {
    it->second.running = true;
    it->second.pid = reply->body.value("pid", 0u);
    conns_[id] = conn->get();
    if (auto size = it->second.pending_size)
      (void)send_message(conn->get(), {{"resize", {size->first, size->second}}});
  }
  return std::move(*conn);
}

bool ExecManager::finish(const std::string& id, int conn) {
  auto m = conn >= 0 ? recv_message(conn, "the container's worker") : Result<Message>(err("no connection"));
  int status = 255;
  std::string error;
  if (m) {
    auto s = m->body.find("exit");
    if (s == m->body.end()) return false;  // not the exit yet
    if (s->is_number_integer()) status = s->get<int>();
    auto e = m->body.find("error");
    if (e != m->body.end() && e->is_string()) error = e->get<std::string>();
  } else {
    error = "the container's VM went away";
  }
  std::lock_guard lock(mu_);
  conns_.erase(id);
  auto it = execs_.find(id);
  if (it != execs_.end()) {
    it->second.running = false;
    it->second.exit_code = status;
    it->second.error = error;
  }
  return true;
}

Result<> ExecManager::resize(const std::string& id, unsigned rows, unsigned cols) {
  std::lock_guard lock(mu_);
  auto it = execs_.find(id);
  if (it == execs_.end()) return api_err(ENOENT, fmt::format("No such exec instance: {}", id));
  auto c = conns_.find(id);
  if (c != conns_.end()) return send_message(c->second, {{"resize", {rows, cols}}});
  if (it->second.exit_code) return api_err(EBUSY, fmt::format("Exec {} is not running", id));
  it->second.pending_size = std::make_pair(rows, cols);  // starting: applied once it runs
  return {};
}

Result<json> ExecManager::inspect(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = execs_.find(id);
  if (it == execs_.end()) return api_err(ENOENT, fmt::format("No such exec instance: {}", id));
  const ExecInstance& e = it->second;
  json args = json::array();
  for (size_t i = 1; i < e.spec.argv.size(); ++i) args.push_back(e.spec.argv[i]);
  return json{{"ID", e.id},
              {"Running", e.running},
              {"ExitCode", e.exit_code ? json(*e.exit_code) : json(nullptr)},
              {"ProcessConfig",
               {{"tty", e.spec.tty}, {"entrypoint", e.spec.argv[0]}, {"arguments", args}, {"privileged", false},
                {"user", e.spec.user}}},
              {"OpenStdin", e.spec.open_stdin},
              {"OpenStderr", e.spec.attach_stderr},
              {"OpenStdout", e.spec.attach_stdout},
              {"CanRemove", false},
              {"ContainerID", e.container_id},
              {"DetachKeys", ""},
              {"Pid", e.pid}};
}

}  // namespace vicvmm::serve
