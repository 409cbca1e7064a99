// docker exec: processes started in a running container's VM through its
// worker's exec socket (worker_protocol.h). Instances live in memory, as
// dockerd's do, bounded in number; an instance outlives its process so
// the client can read the exit code after the stream ends.
//
// Errors carry an errno for the API status, as ContainerManager's do.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "serve/worker_protocol.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::serve {

class ContainerManager;

struct ExecInstance {
  std::string id, container_id;
  ExecSpec spec;
  bool running = false, started = false;
  std::optional<int> exit_code;
  uint32_t pid = 0;  // in the guest
  std::string error;
  uint64_t created_ns = 0;
  // A resize that came before the process was running (the docker CLI
  // sends one right after the 101): applied when it starts.
  std::optional<std::pair<unsigned, unsigned>> pending_size;
};

class ExecManager {
 public:
  explicit ExecManager(ContainerManager& containers) : containers_(containers) {}

  // POST /containers/{id}/exec: docker's body (Cmd, Env, User, WorkingDir,
  // Tty, AttachStdin/Stdout/Stderr). The container must be running.
  Result<std::string> create(const std::string& container_ref, const nlohmann::json& body);
  // Starts the process: `stream` is the client's hijacked socket (the
  // worker writes output to it and reads stdin from it), or -1 for a
  // detached exec. Returns the connection to the worker, on which the exit
  // arrives (finish()). `pending`: stdin bytes the client sent with its
  // request, before the hijack.
  Result<UniqueFd> start(const std::string& id, int stream, const std::string& pending = {});
  // Reads the worker's next message on `conn` (readable; -1: the wait
  // failed): true once the exit is recorded, or the worker went away
  // (recorded as such).
  bool finish(const std::string& id, int conn);
  Result<> resize(const std::string& id, unsigned rows, unsigned cols);
  Result<nlohmann::json> inspect(const std::string& id) const;

 private:
  static constexpr size_t kMaxInstances = 1024;
  void prune_locked();
  ContainerManager& containers_;
  mutable std::mutex mu_;
  std::map<std::string, ExecInstance> execs_;
  std::map<std::string, int> conns_;  // running instances: their worker connection (owned by the route)
};

}  // namespace vicvmm::serve
