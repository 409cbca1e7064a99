#include "serve/worker_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string_view>
#include <vector>

#include "serve/worker.h"

extern char** environ;

namespace vicvmm::serve {

Worker::~Worker() {
  if (reaped_) return;
  if (!started_) kill(pid_, SIGKILL);  // an idle shell: nothing to lose
  control_.reset();  // a running worker carries on alone (serve restarts re-adopt it)
  if (!started_) reap();
}

Result<> Worker::send_start(const ContainerSpec& spec, int log_fd, int stdin_fd, int exec_listener) {
  std::vector<int> fds = {log_fd};
  if (stdin_fd >= 0) fds.push_back(stdin_fd);
  if (exec_listener >= 0) fds.push_back(exec_listener);
  VIC_TRY(send_message(control_.get(), {{"start", to_json(spec)}, {"exec_listener", exec_listener >= 0}}, fds));
  started_ = true;
  return {};
}

Result<Worker::StartCost> Worker::start_reply(const std::string& id) {
  VIC_ASSIGN(Message reply, recv_message(control_.get(), "the container's worker"));
  if (reply.body.contains("started")) {
    StartCost cost;
    if (auto w = reply.body.find("wall_ns"); w != reply.body.end() && w->is_number_unsigned()) cost.wall_ns = *w;
    if (auto c = reply.body.find("cpu_ns"); c != reply.body.end() && c->is_number_unsigned()) cost.cpu_ns = *c;
    return cost;
  }
  auto e = reply.body.find("error");
  return err("container {}: {}", id.substr(0, 12),
             e != reply.body.end() && e->is_string() ? e->get<std::string>() : std::string("the worker failed"));
}

int Worker::reap() {
  if (reaped_) return -1;
  int st = 0;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Result<std::unique_ptr<Worker>> WorkerPool::spawn(const std::string& bin, const std::string& template_dir) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return sys_err("worker: socketpair");
  UniqueFd parent(sv[0]), child(sv[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child.get(), kWorkerControlFd);  // dup2 clears CLOEXEC
  // A worker may outlive serve (its container keeps running): it must not
  // hold serve's stdio (a caller's pipe would never see EOF). Its failures
  // travel over the control socket and into the exit file instead.
  for (int fd = 0; fd <= 2; ++fd) posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
  // Nor anything else of serve's: asio opens its listening and client
  // sockets without O_CLOEXEC, and a worker holding one would keep the
  // port bound after serve stopped, or a hijacked client's socket open.
  posix_spawn_file_actions_addclosefrom_np(&fa, kWorkerControlFd + 1);
  std::vector<std::string> args = {bin, "__worker", template_dir};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Its libraries' symbols bound at load too (vicvmm itself links with
  // -z now): lazy binding put ~5 % of a start's CPU on the start.
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).substr(0, 12) != "LD_BIND_NOW=") envp.push_back(*e);
  static char bind_now[] = "LD_BIND_NOW=1";
  envp.push_back(bind_now);
  envp.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    return sys_err("worker: starting {}", bin);
  }
  child.reset();
  std::unique_ptr<Worker> w(new Worker(pid, std::move(parent)));
  VIC_ASSIGN(Message m, recv_message(w->control(), "a new worker"));
  if (!m.body.contains("ready")) {
    auto e = m.body.find("error");
    return err("worker for {}: {}", template_dir,
               e != m.body.end() && e->is_string() ? e->get<std::string>() : std::string("not ready"));
  }
  return w;
}

WorkerPool::WorkerPool(std::string bin, size_t ready_per_template)
    : bin_(std::move(bin)), target_(ready_per_template), refiller_([this] { refill(); }) {}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  refiller_.join();
}

void WorkerPool::warm(const std::string& template_dir) {
  {
    std::lock_guard lock(mu_);
    ready_[template_dir];
    failed_.erase(template_dir);
  }
  cv_.notify_all();
}

size_t WorkerPool::ready(const std::string& template_dir) const {
  std::lock_guard lock(mu_);
  auto it = ready_.find(template_dir);
  return it == ready_.end() ? 0 : it->second.size();
}

std::unique_ptr<Worker> WorkerPool::take_locked(const std::string& template_dir) {
  auto& q = ready_[template_dir];
  if (q.empty()) return nullptr;
  auto w = std::move(q.front());
  q.pop_front();
  cv_.notify_all();  // refill
  return w;
}

std::unique_ptr<Worker> WorkerPool::try_acquire(const std::string& template_dir) {
  std::lock_guard lock(mu_);
  if (auto w = take_locked(template_dir)) return w;
  failed_.erase(template_dir);  // a new request tries again
  cv_.notify_all();             // the refiller makes one for the next
  return nullptr;
}

Result<std::unique_ptr<Worker>> WorkerPool::acquire(const std::string& template_dir) {
  // Workers are started only by the refiller, a thread that is never
  // confined: a seccomp filter passes over exec, and a worker started from
  // a confined API thread would be held to the API's list.
  std::unique_lock lock(mu_);
  if (wanted_[template_dir] == 0) failed_.erase(template_dir);  // a new request tries again
  ++wanted_[template_dir];
  cv_.notify_all();
  ready_cv_.wait(lock, [&] {
    return stop_ || !ready_[template_dir].empty() || failed_.count(template_dir);
  });
  --wanted_[template_dir];
  if (auto w = take_locked(template_dir)) return w;
  if (auto f = failed_.find(template_dir); f != failed_.end()) {
    Error e = f->second;
    if (wanted_[template_dir] == 0) failed_.erase(f);  // the next request tries again
    return tl::unexpected(e);
  }
  return err("worker for {}: serve is stopping", template_dir);
}

void WorkerPool::refill() {
  prctl(PR_SET_NAME, "vicvmm-workers", 0, 0, 0);
  std::unique_lock lock(mu_);
  while (!stop_) {
    // Waiting requests first, then the ready target.
    std::string need;
    for (auto& [dir, n] : wanted_)
      if (n > 0 && ready_[dir].size() < n && !failed_.count(dir)) need = dir;
    if (need.empty())
      for (auto& [dir, q] : ready_)
        if (q.size() < target_ && !failed_.count(dir)) need = dir;
    if (need.empty()) {
      cv_.wait(lock);
      continue;
    }
    lock.unlock();
    auto w = spawn(bin_, need);
    lock.lock();
    if (w) {
      ready_[need].push_back(std::move(*w));
    } else {
      // A template that cannot start workers (removed, broken): stop trying
      // until someone asks again; the waiting requests get the error.
      ready_.erase(need);
      failed_[need] = w.error();
    }
    ready_cv_.notify_all();
  }
  ready_.clear();  // idle workers are killed with their handles
  ready_cv_.notify_all();
}

}  // namespace vicvmm::serve
