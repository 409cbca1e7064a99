// The containers of `vicvmm serve`: each a VM in a worker process of its
// own (worker.h), cloned from the base template with its image's disk
// attached at start. Records, logs and exit statuses live on disk under
// <state>/vicvmm/containers/<id>/ (config.json, log, exit.json), so a
// restart of serve loses none: a container that was running is re-adopted
// when its worker still runs, or reported exited with the reason.
//
// Errors carry an errno that says what the API answers: ENOENT 404,
// EEXIST/EBUSY 409, EINVAL 400, anything else 500.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "image/store.h"
#include "serve/container_dirs.h"
#include "serve/image_lookup.h"
#include "serve/worker_pool.h"
#include "vmm/net/slirp_backend.h"
#include "vmm/result.h"

namespace vicvmm::serve {

struct Container {
  std::string id;    // 64 hex digits
  std::string name;  // without docker's leading "/"
  std::string image_ref, image_id;
  nlohmann::json config;  // docker's Config object, as created (for inspect)
  bool auto_remove = false;
  std::vector<net::PortForward> ports;
  ContainerSpec spec;
  std::string state = "created";  // created | running | exited
  int exit_code = 0;
  std::string error;  // why it stopped, when not by its own exit
  uint64_t created_ns = 0, started_ns = 0, finished_ns = 0;  // CLOCK_REALTIME
  pid_t pid = 0;      // the worker process while running
  // Not in the record: this serve reaped the container's last worker, so
  // nothing writes into its directory any more (which may then be reused).
  bool worker_reaped = false;
  // The record's fields above that never change after create (the spec and
  // docker's whole config among them), as a JSON object: serialised once,
  // not again with each change of state.
  std::string fixed_json;
};

// The names of the containers (any state) made from image `image_id`:
// the image must stay while they exist.
std::vector<std::string> containers_using(const std::vector<Container>& containers, const std::string& image_id);

class ContainerManager {
 public:
  // `root`: the containers' directory; `base_template`: the template a
  // container is cloned from (booted with an empty disk slot) unless its
  // image has a template of its own in `templates_dir` (template create
  // --image), which starts it about twice as fast (its page cache is warm).
  static Result<std::unique_ptr<ContainerManager>> open(std::string root, image::Store& store, WorkerPool& workers,
                                                        std::string base_template, std::string templates_dir = "");
  ~ContainerManager();

  // POST /containers/create: docker's body (kept as the container's
  // config); `name` may be empty. With `may_block` false it fails with
  // EAGAIN, having done nothing, where it would wait on a disk: the image's
  // EROFS disk not built yet, or no container directory made ahead.
  Result<std::string> create(nlohmann::json body, const std::string& name, bool may_block = true);

  // Starts a container; blocks while its worker starts the VM.
  Result<> start(const std::string& ref);
  // The same in two halves, for serve's I/O thread, which must not block:
  // begin_start() hands the container to a ready worker (EAGAIN, having
  // done nothing, when none is ready or `may_wait` allows no waiting for
  // one); finish_start() records the worker's answer once
  // `worker->control()` is readable. A null worker: running already.
  struct PendingStart {
    std::string id;
    std::unique_ptr<Worker> worker;
    uint64_t t0 = 0, t_acquired = 0;  // monotonic ns, for the log line
  };
  Result<PendingStart> begin_start(const std::string& ref, bool may_wait);
  Result<> finish_start(PendingStart& p);
  // SIGTERM then, after `grace`, SIGKILL to the container's VMM (the VM stops).
  Result<> stop(const std::string& ref, std::chrono::seconds grace);
  Result<> kill(const std::string& ref, int signal);
  Result<> remove(const std::string& ref, bool force);

  // The terminal size of a container made with Tty (docker run -t).
  Result<> resize(const std::string& ref, unsigned rows, unsigned cols);
  // The write end of a container's stdin (created with OpenStdin), for
  // the one attach that asked for stdin; an invalid fd otherwise.
  UniqueFd take_stdin(const std::string& id);

  // The records on disk, without taking charge of anything (`vicvmm ps`).
  static std::vector<Container> read_records(const std::string& root);
  const std::string& base_template() const { return base_; }

  // By full id, unique id prefix or name.
  Result<Container> get(const std::string& ref) const;
  // What a stream that follows a container checks as it goes: a copy of
  // the few fields, not of the whole record (its config among them).
  struct Status {
    std::string id;
    std::string state;
    int exit_code = 0;
    std::string error;
    uint64_t finished_ns = 0;
    bool tty = false;
  };
  std::optional<Status> status(const std::string& id) const;
  // The same by full id, unique id prefix or name (what get() takes).
  Result<Status> status_of(const std::string& ref) const;

  // Calls `f` whenever a container starts, stops or is removed, until the
  // handle is dropped. `f` runs under the manager's lock on whichever
  // thread made the change: it must only hand the news on (Wakeup::notify).
  class Subscription {
   public:
    Subscription(const ContainerManager* m, uint64_t key) : m_(m), key_(key) {}
    Subscription(Subscription&& o) noexcept : m_(std::exchange(o.m_, nullptr)), key_(o.key_) {}
    Subscription& operator=(Subscription&&) = delete;
    ~Subscription();

   private:
    const ContainerManager* m_;
    uint64_t key_;
  };
  Subscription subscribe(std::function<void()> f) const;
  std::vector<Container> list() const;
  std::string log_path(const std::string& id) const { return root_ + "/" + id + "/log"; }
  // The exit status of a container removed automatically (--rm) after it
  // stopped, for the wait that outlives its record.
  std::optional<int> removed_exit(const std::string& id) const;
  // False once the container is gone (removed).
  bool exists(const std::string& id) const;
  size_t count(const std::string& state) const;

 private:
  ContainerManager(std::string root, image::Store& store, WorkerPool& workers, std::string base, std::string templates)
      : root_(std::move(root)),
        dirs_(root_, kDirsAhead),
        store_(store),
        lookup_(store, std::move(templates)),
        workers_(workers),
        base_(std::move(base)) {}
  static constexpr size_t kDirsAhead = 4;
  Result<std::string> resolve_locked(const std::string& ref) const;
  static Status status_locked(const Container& c);
  Result<> save_locked(const Container& c) const;
  void load_all();
  void monitor();
  void finish_locked(Container& c, int status, const std::string& reason);
  // A container's state changed: blocking waiters and subscribers hear it.
  void changed_locked() const;
  // Removes a container's directory, or keeps it for a next container
  // when nothing can write into it any more.
  void remove_files(const Container& c);

  std::string root_;
  ContainerDirs dirs_;  // made ahead by the monitor thread
  image::Store& store_;
  ImageLookup lookup_;  // images by reference, and their own templates
  WorkerPool& workers_;
  std::string base_;
  mutable std::mutex mu_;
  std::map<std::string, Container> containers_;
  std::map<std::string, std::unique_ptr<Worker>> running_;  // our own workers, by container id
  struct StdinPipe {
    UniqueFd read, write;
  };
  std::map<std::string, StdinPipe> stdin_;
  // Created containers' exec sockets (bound ahead with their directory),
  // until their first start hands them to the worker.
  std::map<std::string, UniqueFd> exec_listeners_;
  std::map<std::string, int> removed_exits_;  // bounded: the newest kRemovedExits  // OpenStdin containers: until started / attached
  bool stop_ = false;
  mutable std::condition_variable cv_;
  mutable std::map<uint64_t, std::function<void()>> subscribers_;
  mutable uint64_t next_subscriber_ = 0;
  // The monitor sleeps in poll() on a pidfd per running worker (serve's
  // children and re-adopted ones alike) and this eventfd (a start, or stop).
  UniqueFd wake_;
  std::map<std::string, UniqueFd> pidfds_;  // monitor thread only
  void wake_monitor();
  std::thread monitor_;
};

}  // namespace vicvmm::serve
