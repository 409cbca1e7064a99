#include "serve/containers.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "image/container_spec.h"
#include "serve/api_error.h"
#include "serve/vm_memory.h"
#include "vmm/machine.h"
#include "vmm/seccomp/seccomp.h"

namespace vicvmm::serve {

using nlohmann::json;

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Docker's JSON fields that may be a string, a list or null.
std::optional<std::vector<std::string>> string_list(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  std::vector<std::string> out;
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    for (const auto& e : *it)
      if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json forwards_json(const std::vector<net::PortForward>& ports) {
  json a = json::array();
  for (const auto& p : ports)
    a.push_back({{"host_ip", p.host_ip}, {"host_port", p.host_port}, {"guest_port", p.guest_port}, {"udp", p.udp}});
  return a;
}

json fixed_record(const Container& c) {
  return {{"id", c.id},
          {"name", c.name},
          {"image_ref", c.image_ref},
          {"image_id", c.image_id},
          {"config", c.config},
          {"auto_remove", c.auto_remove},
          {"ports", forwards_json(c.ports)},
          {"created_ns", c.created_ns},
          {"spec", to_json(c.spec)}};
}

// The fields a start or an exit changes: one line of the state file.
json state_json(const Container& c) {
  return {{"state", c.state},           {"exit_code", c.exit_code}, {"error", c.error},
          {"started_ns", c.started_ns}, {"finished_ns", c.finished_ns}, {"pid", c.pid}};
}

// The record file's text: the fixed fields as serialised at create, and
// the state then ({"a":1} and {"b":2} make {"a":1,"b":2}).
std::string record_text(const Container& c) {
  std::string text = c.fixed_json.empty() ? fixed_record(c).dump() : c.fixed_json;
  const std::string tail = state_json(c).dump();
  text.back() = ',';
  text.append(tail, 1);
  text += '\n';
  return text;
}

// A container from its directory's files: the record, then the newest
// state line that reads whole.
Result<Container> container_from(const ContainerDirs::Record& files) {
  json j = json::parse(files.record, nullptr, false);
  if (!j.is_object()) return err("not a JSON object");
  for (const auto& line : files.states) {
    json st = json::parse(line, nullptr, false);
    if (!st.is_object()) continue;
    for (const char* key : {"state", "exit_code", "error", "started_ns", "finished_ns", "pid"})
      if (st.contains(key)) j[key] = st[key];
    break;
  }
  Container c;
  try {
    c.id = j.at("id").get<std::string>();
    c.name = j.at("name").get<std::string>();
    c.image_ref = j.at("image_ref").get<std::string>();
    c.image_id = j.at("image_id").get<std::string>();
    c.config = j.at("config");
    c.auto_remove = j.at("auto_remove").get<bool>();
    for (const auto& p : j.at("ports"))
      c.ports.push_back({p.at("udp").get<bool>(), p.at("host_ip").get<std::string>(), p.at("host_port").get<uint16_t>(),
                         p.at("guest_port").get<uint16_t>()});
    c.state = j.at("state").get<std::string>();
    c.exit_code = j.at("exit_code").get<int>();
    c.error = j.at("error").get<std::string>();
    c.created_ns = j.at("created_ns").get<uint64_t>();
    c.started_ns = j.at("started_ns").get<uint64_t>();
    c.finished_ns = j.at("finished_ns").get<uint64_t>();
    c.pid = j.at("pid").get<pid_t>();
  } catch (const std::exception& e) {
    return err("{}", e.what());
  }
  VIC_ASSIGN(c.spec, spec_from_json(j.at("spec")));
  c.fixed_json = fixed_record(c).dump();
  return c;
}

bool valid_name(const std::string& n) {
  static const std::regex re("[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}");
  return std::regex_match(n, re);
}

// A worker we did not start (serve restarted): alive and still a worker?
bool is_worker(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
  return cmdline && cmdline->find("__worker") != std::string::npos;
}

}  // namespace

std::vector<std::string> containers_using(const std::vector<Container>& containers, const std::string& image_id) {
  std::vector<std::string> names;
  for (const auto& c : containers)
    if (c.image_id == image_id) names.push_back(c.name);
  return names;
}

Result<std::unique_ptr<ContainerManager>> ContainerManager::open(std::string root, image::Store& store,
                                                                 WorkerPool& workers, std::string base_template,
                                                                 std::string templates_dir) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return err("containers directory {}: {}", root, ec.message());
  std::unique_ptr<ContainerManager> m(
      new ContainerManager(std::move(root), store, workers, std::move(base_template), std::move(templates_dir)));
  m->wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m->wake_) return sys_err("containers: eventfd");
  m->load_all();
  m->workers_.warm(m->base_);
  m->monitor_ = std::thread([p = m.get()] { p->monitor(); });
  return m;
}

void ContainerManager::wake_monitor() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_.get(), &one, sizeof one);
  (void)n;  // EAGAIN: a wake-up is pending anyway
}

ContainerManager::~ContainerManager() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  wake_monitor();
  if (monitor_.joinable()) monitor_.join();
  // Running workers carry on without us; a restarted serve re-adopts them.
}

std::vector<Container> ContainerManager::read_records(const std::string& root) {
  std::vector<Container> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (ContainerDirs::is_spare_name(e.path().filename().string())) continue;
    auto files = ContainerDirs::read(e.path().string());
    if (!files) continue;
    auto c = container_from(*files);
    if (!c) continue;
    // A running record whose worker is gone (serve down): say so, as serve would.
    if (c->state == "running" && access(c->spec.exit_file.c_str(), F_OK) != 0 && !is_worker(c->pid)) {
      c->state = "exited";
      c->exit_code = 125;
      c->error = "the container's VM is gone";
    }
    out.push_back(std::move(*c));
  }
  std::sort(out.begin(), out.end(), [](const Container& a, const Container& b) { return a.created_ns > b.created_ns; });
  return out;
}

void ContainerManager::load_all() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root_, ec)) {
    const std::string id = e.path().filename();
    if (ContainerDirs::is_spare_name(id)) continue;
    auto files = ContainerDirs::read(e.path().string());
    if (!files) continue;  // a create that never finished: nothing to keep
    auto c = container_from(*files);
    if (!c || c->id != id) {
      std::fprintf(stderr, "vicvmm serve: container %s: unreadable record, skipped\n", id.c_str());
      continue;
    }
    std::lock_guard lock(mu_);
    auto& rec = containers_[id] = std::move(*c);
    if (rec.state == "running" && access(rec.spec.exit_file.c_str(), F_OK) != 0 && !is_worker(rec.pid))
      finish_locked(rec, 125, "vicvmm serve restarted and the container's VM was gone");
    // Still running (re-adopted) or finished meanwhile: the monitor sees its exit file.
  }
}

Result<std::string> ContainerManager::resolve_locked(const std::string& ref) const {
  std::string r = ref.starts_with("/") ? ref.substr(1) : ref;
  if (containers_.count(r)) return r;
  std::string found;
  for (const auto& [id, c] : containers_)
    if (c.name == r) return id;
  if (r.size() >= 1 && r.find_first_not_of("0123456789abcdef") == std::string::npos)
    for (const auto& [id, c] : containers_)
      if (id.starts_with(r)) {
        if (!found.empty()) return api_err(EINVAL, fmt::format("multiple IDs found with provided prefix: {}", r));
        found = id;
      }
  if (found.empty()) return api_err(ENOENT, fmt::format("No such container: {}", ref));
  return found;
}

Result<> ContainerManager::save_locked(const Container& c) const {
  return ContainerDirs::append_state(root_ + "/" + c.id, state_json(c).dump());
}

Result<std::string> ContainerManager::create(json body, const std::string& name, bool may_block) {
  if (!body.is_object()) return api_err(EINVAL, "the container configuration is not a JSON object");
  const std::string ref = string_field(body, "Image");
  if (ref.empty()) return api_err(EINVAL, "no image given (Image)");
  if (!name.empty() && !valid_name(name))
    return api_err(EINVAL, fmt::format("Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name));
  auto found = lookup_.resolve(ref);
  if (!found) return api_err(ENOENT, fmt::format("No such image: {}", ref));
  const image::Image& img = **found;

  image::Overrides ov;
  if (auto cmd = string_list(body, "Cmd")) ov.cmd = *cmd;
  if (auto ep = string_list(body, "Entrypoint")) {
    if (ep->size() == 1 && ep->front().empty()) ep->clear();  // --entrypoint "": none
    ov.entrypoint = *ep;
  }
  if (auto env = string_list(body, "Env")) ov.env = *env;
  if (auto w = string_field(body, "WorkingDir"); !w.empty()) ov.workdir = w;
  if (auto u = string_field(body, "User"); !u.empty()) ov.user = u;
  auto process = image::process_spec(ref, img.config, ov);
  if (!process) return api_err(EINVAL, process.error().message);

  Container c;
  c.id = random_hex(32);
  if (c.id.empty()) return sys_err("container id: getrandom");
  c.name = name.empty() ? "vic_" + c.id.substr(0, 10) : name;
  c.image_ref = ref;
  c.image_id = img.id;
  c.created_ns = realtime_ns();
  static const json no_host_config = json::object();
  auto hc = body.find("HostConfig");
  const json& host_config = hc != body.end() && hc->is_object() ? *hc : no_host_config;
  c.auto_remove = host_config.value("AutoRemove", false);
  if (auto pb = host_config.find("PortBindings"); pb != host_config.end() && pb->is_object()) {
    for (const auto& [key, bindings] : pb->items()) {
      std::string proto = key.find('/') == std::string::npos ? "tcp" : key.substr(key.find('/') + 1);
      if (!bindings.is_array()) continue;
      for (const auto& b : bindings) {
        std::string ip = b.is_object() ? string_field(b, "HostIp") : "";
        std::string port = b.is_object() ? string_field(b, "HostPort") : "";
        if (port.empty()) return api_err(EINVAL, fmt::format("port {}: a host port is needed (vicvmm does not pick one)", key));
        std::string text = fmt::format("{}{}:{}/{}", ip.empty() ? "" : ip + ":", port, key.substr(0, key.find('/')), proto);
        auto f = net::parse_publish(text);
        if (!f) return api_err(EINVAL, f.error().message);
        c.ports.insert(c.ports.end(), f->begin(), f->end());
        c.spec.publish.push_back(text);
      }
    }
  }
  std::string hostname = string_field(body, "Hostname");
  c.spec.id = c.id;
  c.spec.argv = process->argv;
  c.spec.env = image::merge_env(process->env, {"HOSTNAME=" + (hostname.empty() ? c.id.substr(0, 12) : hostname)});
  c.spec.workdir = process->workdir;
  c.spec.user = process->user;
  c.spec.hostname = hostname.empty() ? c.id.substr(0, 12) : hostname;
  c.spec.tty = body.value("Tty", false);
  c.spec.open_stdin = body.value("OpenStdin", false);
  c.spec.exit_file = root_ + "/" + c.id + "/exit.json";
  c.spec.exec_socket = root_ + "/" + c.id + "/exec.sock";
  // A template of this image (the newest by name order is as good as any):
  // clones of it start in the image already. Else the base template, with
  // the image's disk attached at start.
  std::string own_template = lookup_.template_of(img.id);
  if (own_template.empty()) {
    c.spec.template_dir = base_;
    if (may_block) {
      VIC_ASSIGN(c.spec.image_disk, store_.erofs_disk(img));  // built on first use of the image
    } else if (auto built = store_.erofs_disk_if_built(img)) {
      c.spec.image_disk = std::move(*built);
    } else {
      return api_err(EAGAIN, fmt::format("image {}: its disk is not built yet", img.id.substr(0, 12)));
    }
  } else {
    c.spec.template_dir = own_template;
  }
  c.config = std::move(body);
  c.fixed_json = fixed_record(c).dump();

  std::lock_guard lock(mu_);
  for (const auto& [id, other] : containers_)
    if (other.name == c.name)
      return api_err(EEXIST, fmt::format("Conflict. The container name \"/{}\" is already in use by container \"{}\". "
                                         "You have to remove (or rename) that container to be able to reuse that name.",
                                         c.name, id));
  VIC_ASSIGN(UniqueFd exec_listener, dirs_.claim(c.id, record_text(c), may_block));
  std::string id = c.id;
  exec_listeners_[id] = std::move(exec_listener);
  if (c.spec.open_stdin) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return sys_err("container {}: stdin pipe", id.substr(0, 12));
    stdin_[id] = StdinPipe{UniqueFd(p[0]), UniqueFd(p[1])};
  }
  containers_[id] = std::move(c);
  return id;
}

Result<> ContainerManager::start(const std::string& ref) {
  VIC_ASSIGN(PendingStart p, begin_start(ref, true));
  if (!p.worker) return {};  // running already
  return finish_start(p);
}

Result<ContainerManager::PendingStart> ContainerManager::begin_start(const std::string& ref, bool may_wait) {
  PendingStart p;
  p.t0 = monotonic_ns();
  std::string template_dir;
  {
    std::lock_guard lock(mu_);
    VIC_ASSIGN(p.id, resolve_locked(ref));
    const Container& c = containers_[p.id];
    if (c.state == "running") return p;  // docker: 304, nothing to do
    if (c.state == "starting") return api_err(EBUSY, fmt::format("container {} is starting", p.id.substr(0, 12)));
    template_dir = c.spec.template_dir.empty() ? base_ : c.spec.template_dir;
  }
  if (may_wait) {
    VIC_ASSIGN(p.worker, workers_.acquire(template_dir));
  } else {
    p.worker = workers_.try_acquire(template_dir);
    if (!p.worker) return api_err(EAGAIN, "no worker ready");
  }
  p.t_acquired = monotonic_ns();
  ContainerSpec spec;
  UniqueFd input, exec_listener;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(p.id);
    if (it == containers_.end()) return api_err(ENOENT, fmt::format("No such container: {}", ref));
    Container& c = it->second;
    // Another start won the race meanwhile (the worker taken is killed).
    if (c.state == "running" || c.state == "starting") {
      p.worker.reset();
      return p;
    }
    c.state = "starting";  // no second start meanwhile
    c.worker_reaped = false;
    spec = c.spec;
    spec.clone_id = static_cast<uint32_t>(containers_.size());
    if (auto s = stdin_.find(p.id); s != stdin_.end()) input = std::move(s->second.read);
    if (auto l = exec_listeners_.find(p.id); l != exec_listeners_.end()) {
      exec_listener = std::move(l->second);
      exec_listeners_.erase(l);
    }
  }
  auto fail = [&](const Error& e) -> tl::unexpected<Error> {
    p.worker.reset();  // never sent the container: killed and reaped
    std::lock_guard lock(mu_);
    if (auto it = containers_.find(p.id); it != containers_.end()) finish_locked(it->second, 125, e.message);
    return tl::unexpected(e);
  };
  ::unlink(spec.exit_file.c_str());  // an earlier run's
  UniqueFd log(::open(log_path(p.id).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!log) return fail(sys_err("container {}: opening its log", p.id.substr(0, 12)).value());
  // A restarted container (docker start) gets no stdin: EOF.
  if (spec.open_stdin && !input) spec.open_stdin = false;
  if (auto sent = p.worker->send_start(spec, log.get(), input.get(), exec_listener.get()); !sent)
    return fail(sent.error());
  return p;
}

Result<> ContainerManager::finish_start(PendingStart& p) {
  auto cost = p.worker->start_reply(p.id);
  const uint64_t t_started = monotonic_ns();
  std::lock_guard lock(mu_);
  auto it = containers_.find(p.id);
  if (!cost) {
    p.worker->reap();
    if (it != containers_.end()) finish_locked(it->second, 125, cost.error().message);
    return tl::unexpected(cost.error());
  }
  if (it == containers_.end()) return api_err(ENOENT, fmt::format("No such container: {}", p.id));
  Container& c = it->second;
  c.state = "running";
  c.pid = p.worker->pid();
  c.started_ns = realtime_ns();
  c.finished_ns = 0;
  c.exit_code = 0;
  c.error.clear();
  running_[p.id] = std::move(p.worker);
  wake_monitor();  // watch this one's worker from now on
  changed_locked();
  auto saved = save_locked(c);
  const uint64_t t_end = monotonic_ns();
  std::fprintf(stderr,
               "container %s started in %.3f ms: worker ready after %.3f, its start %.3f (in the worker %.3f, "
               "CPU %.3f), record %.3f\n",
               p.id.substr(0, 12).c_str(), (t_end - p.t0) / 1e6, (p.t_acquired - p.t0) / 1e6,
               (t_started - p.t_acquired) / 1e6, cost->wall_ns / 1e6, cost->cpu_ns / 1e6, (t_end - t_started) / 1e6);
  return saved;
}

UniqueFd ContainerManager::take_stdin(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = stdin_.find(id);
  return it == stdin_.end() ? UniqueFd() : std::move(it->second.write);
}

void ContainerManager::finish_locked(Container& c, int status, const std::string& reason) {
  stdin_.erase(c.id);
  exec_listeners_.erase(c.id);
  c.state = "exited";
  c.exit_code = status;
  c.error = reason;
  c.finished_ns = realtime_ns();
  c.pid = 0;
  (void)save_locked(c);
  changed_locked();
}

void ContainerManager::changed_locked() const {
  cv_.notify_all();
  for (const auto& [key, f] : subscribers_) f();
}

ContainerManager::Subscription ContainerManager::subscribe(std::function<void()> f) const {
  std::lock_guard lock(mu_);
  const uint64_t key = next_subscriber_++;
  subscribers_[key] = std::move(f);
  return Subscription(this, key);
}

ContainerManager::Subscription::~Subscription() {
  if (!m_) return;
  std::lock_guard lock(m_->mu_);
  m_->subscribers_.erase(key_);
}

std::optional<ContainerManager::Status> ContainerManager::status(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return std::nullopt;
  return status_locked(it->second);
}

Result<ContainerManager::Status> ContainerManager::status_of(const std::string& ref) const {
  std::lock_guard lock(mu_);
  VIC_ASSIGN(std::string id, resolve_locked(ref));
  return status_locked(containers_.at(id));
}

ContainerManager::Status ContainerManager::status_locked(const Container& c) {
  return Status{c.id, c.state, c.exit_code, c.error, c.finished_ns, c.spec.tty};
}

void ContainerManager::remove_files(const Container& c) {
  const std::string dir = root_ + "/" + c.id;
  const bool never_started = c.state == "created" && c.started_ns == 0;
  if ((never_started || c.worker_reaped) && dirs_.recycle(dir)) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void ContainerManager::monitor() {
  // Reads exit files and records: the API's allow-list. Unconfined if the
  // filter cannot be installed (serve's own threads would fail anyway).
  prctl(PR_SET_NAME, "vicvmm-monitor", 0, 0, 0);
  (void)seccomp::confine_current_thread(seccomp::ThreadKind::Api);
  std::unique_lock lock(mu_);
  while (!stop_) {
    // Sleep until a worker exits (its pidfd turns readable), a container
    // starts, or a second passes (a safety net; 50 ms while a worker
    // cannot be watched by pidfd). Polling every container's exit file
    // instead cost ~1 ms of CPU per container per second.
    std::vector<pollfd> fds{{wake_.get(), POLLIN, 0}};
    std::vector<std::string> watched;  // the container of fds[i + 1]
    bool unwatched = false;
    for (auto it = pidfds_.begin(); it != pidfds_.end();) {
      auto c = containers_.find(it->first);
      if (c == containers_.end() || c->second.state != "running") it = pidfds_.erase(it);
      else ++it;
    }
    for (const auto& [id, c] : containers_) {
      if (c.state != "running") continue;
      auto it = pidfds_.find(id);
      if (it == pidfds_.end()) {
        UniqueFd fd(c.pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, c.pid, 0)) : -1);
        if (!fd) {
          unwatched = true;
          continue;
        }
        it = pidfds_.emplace(id, std::move(fd)).first;
      }
      fds.push_back({it->second.get(), POLLIN, 0});
      watched.push_back(id);
    }
    lock.unlock();
    // Directories for the next creates, made here rather than in a request.
    if (dirs_.wants_refill()) dirs_.refill();
    int ready = ::poll(fds.data(), fds.size(), unwatched ? 50 : 1000);
    uint64_t drained;
    while (::read(wake_.get(), &drained, sizeof drained) > 0) {
    }
    lock.lock();
    // Only the containers whose worker exited are looked at (a start
    // wakes this loop too: reading every running container's exit file
    // then made each start cost more the more containers ran), all of
    // them on the safety net's timeout or while one is unwatched.
    std::set<std::string> exited;
    for (size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents) exited.insert(watched[i - 1]);
    const bool check_all = ready == 0 || unwatched;
    std::vector<std::string> auto_removed;
    for (auto& [id, c] : containers_) {
      if (c.state != "running") continue;
      if (!check_all && !exited.count(id) && pidfds_.count(id)) continue;
      auto text = read_file(c.spec.exit_file);
      auto own = running_.find(id);
      int status = -1;
      bool reaped = false;
      std::string reason;
      if (text) {
        json j = json::parse(*text, nullptr, false);
        status = j.is_object() ? j.value("status", 125) : 125;
        reason = j.is_object() ? j.value("reason", std::string()) : std::string();
      } else if (own != running_.end()) {
        int st = 0;
        pid_t r = waitpid(own->second->pid(), &st, WNOHANG);
        if (r == own->second->pid()) {
          // Gone without an exit file: killed (docker kill) or crashed.
          status = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 125;
          reason = WIFSIGNALED(st) ? fmt::format("the container's VMM was killed by signal {}", WTERMSIG(st))
                                   : "the container's VMM exited without a status";
          reaped = true;  // here: nothing left for its handle to reap
        }
      } else if (!is_worker(c.pid)) {
        status = 125;
        reason = "the container's VMM went away without a status";
      }
      if (status < 0) continue;
      if (own != running_.end()) {
        if (!reaped) own->second->reap();
        running_.erase(own);
        c.worker_reaped = true;
      }
      remove_memory_cgroup_of(c.pid);  // left behind by a worker that was killed
      finish_locked(c, status, reason);
      if (c.auto_remove) auto_removed.push_back(id);
    }
    for (const auto& id : auto_removed) {
      if (removed_exits_.size() >= 4096) removed_exits_.erase(removed_exits_.begin());
      removed_exits_[id] = containers_[id].exit_code;
      remove_files(containers_[id]);
      containers_.erase(id);
    }
    if (!auto_removed.empty()) changed_locked();
  }
}

Result<> ContainerManager::kill(const std::string& ref, int signal) {
  std::lock_guard lock(mu_);
  VIC_ASSIGN(std::string id, resolve_locked(ref));
  const Container& c = containers_[id];
  if (c.state != "running") return api_err(EBUSY, fmt::format("Container {} is not running", id));
  // The VM is the container: any signal but SIGKILL asks the VMM to stop it.
  if (::kill(c.pid, signal == SIGKILL ? SIGKILL : SIGTERM) != 0) return sys_err("container {}: kill", id.substr(0, 12));
  return {};
}

Result<> ContainerManager::stop(const std::string& ref, std::chrono::seconds grace) {
  std::unique_lock lock(mu_);
  VIC_ASSIGN(std::string id, resolve_locked(ref));
  auto running = [&] {
    auto it = containers_.find(id);
    return it != containers_.end() && it->second.state == "running";
  };
  if (!running()) return {};
  ::kill(containers_[id].pid, SIGTERM);
  if (!cv_.wait_for(lock, grace, [&] { return !running(); })) {
    if (running()) ::kill(containers_[id].pid, SIGKILL);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !running(); });
  }
  return {};
}

Result<> ContainerManager::remove(const std::string& ref, bool force) {
  std::unique_lock lock(mu_);
  VIC_ASSIGN(std::string id, resolve_locked(ref));
  auto gone_or_stopped = [&] {
    auto it = containers_.find(id);
    return it == containers_.end() || it->second.state != "running";
  };
  if (!gone_or_stopped()) {
    if (!force)
      return api_err(EBUSY, fmt::format("You cannot remove a running container {}. Stop the container before attempting "
                                        "removal or force remove",
                                        id));
    ::kill(containers_[id].pid, SIGKILL);
    cv_.wait_for(lock, std::chrono::seconds(10), gone_or_stopped);
  }
  if (containers_.count(id) && containers_[id].state == "starting")
    return api_err(EBUSY, fmt::format("container {} is starting", id));
  if (auto it = containers_.find(id); it != containers_.end()) remove_files(it->second);
  containers_.erase(id);
  stdin_.erase(id);
  exec_listeners_.erase(id);
  changed_locked();
  return {};
}

Result<> ContainerManager::resize(const std::string& ref, unsigned rows, unsigned cols) {
  VIC_ASSIGN(Container c, get(ref));
  if (c.state != "running") return api_err(EBUSY, fmt::format("Container {} is not running", c.id));
  if (!c.spec.tty) return {};  // docker accepts it and does nothing
  VIC_ASSIGN(UniqueFd conn, connect_seqpacket(c.spec.exec_socket));
  VIC_TRY(send_message(conn.get(), {{"resize_main", {rows, cols}}}));
  VIC_TRY(recv_message(conn.get(), "the container's worker"));
  return {};
}

Result<Container> ContainerManager::get(const std::string& ref) const {
  std::lock_guard lock(mu_);
  VIC_ASSIGN(std::string id, resolve_locked(ref));
  return containers_.at(id);
}

std::optional<int> ContainerManager::removed_exit(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = removed_exits_.find(id);
  return it == removed_exits_.end() ? std::nullopt : std::optional<int>(it->second);
}

bool ContainerManager::exists(const std::string& id) const {
  std::lock_guard lock(mu_);
  return containers_.count(id) != 0;
}

std::vector<Container> ContainerManager::list() const {
  std::lock_guard lock(mu_);
  std::vector<Container> out;
  for (const auto& [id, c] : containers_) out.push_back(c);
  std::sort(out.begin(), out.end(), [](const Container& a, const Container& b) { return a.created_ns > b.created_ns; });
  return out;
}

size_t ContainerManager::count(const std::string& state) const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [id, c] : containers_) n += state.empty() || c.state == state;
  return n;
}

}  // namespace vicvmm::serve
