// The conversation between `vicvmm serve` and a container's worker process
// (one process per container VM: a fault in one VMM never reaches serve or
// another container). A SOCK_SEQPACKET socketpair keeps message boundaries
// and carries file descriptors; every message is one JSON object.
//
//   worker -> serve  {"ready": true}                      the VM shell is built
//   serve  -> worker {"start": ContainerSpec} + [log fd]  run the container
//   worker -> serve  {"started": true, "pid": N}          its vCPU runs
//   worker -> serve  {"exit": status, "reason": "..."}    it stopped
// The worker then exits with the container's status (0-255), so serve (or
// anyone after a restart of serve) can also learn it from the exit file
// the worker writes next to the log.
//
// While the container runs, the worker also listens on its exec socket
// (spec.exec_socket, a SOCK_SEQPACKET Unix socket: a restarted serve finds
// it by path). One connection per `docker exec`:
//   serve  -> worker {"exec": ExecSpec} + [the client's stream socket]
//   worker -> serve  {"started": true, "pid": N} | {"error": "..."}
//   serve  -> worker {"resize": [rows, cols]} | {"signal": N}   (any number)
//   worker -> serve  {"exit": status, "error": "..."}
// or, for the container's own terminal (docker run -t):
//   serve  -> worker {"resize_main": [rows, cols]};  worker -> serve {"ok": true}
// The worker writes the process's output to the stream (framed unless a
// TTY) and feeds its stdin from it; it closes its copy after the exit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::serve {

struct ContainerSpec {
  std::string id;  // 64 hex digits
  std::vector<std::string> argv, env;
  std::string workdir, user, hostname;
  std::string image_disk;  // non-empty: attach into the base template's empty slot
  std::string template_dir;  // the template the container is a clone of
  std::vector<std::string> publish;  // "[HOSTIP:]HOSTPORT:GUESTPORT[/proto]"
  bool tty = false;        // output not framed (docker's TTY mode)
  bool open_stdin = false; // the start message carries a stdin descriptor too
  std::string exit_file;   // where the worker records the exit status
  std::string exec_socket; // where the worker takes exec requests while the container runs
  uint32_t clone_id = 0;
};

nlohmann::json to_json(const ContainerSpec& s);
Result<ContainerSpec> spec_from_json(const nlohmann::json& j);

// A second process in a running container (docker exec).
struct ExecSpec {
  std::vector<std::string> argv, env;
  std::string workdir, user;
  bool tty = false, open_stdin = false;
  bool attach_stdout = true, attach_stderr = true;
};
nlohmann::json to_json(const ExecSpec& s);
Result<ExecSpec> exec_spec_from_json(const nlohmann::json& j);

// A SOCK_SEQPACKET Unix socket at `path`, however long the path (bound and
// reached through its directory's descriptor: sun_path holds 107 bytes).
Result<UniqueFd> listen_seqpacket(const std::string& path);
Result<UniqueFd> connect_seqpacket(const std::string& path);

// One message (a JSON object) with up to 4 file descriptors.
Result<> send_message(int sock, const nlohmann::json& msg, const std::vector<int>& fds = {});
struct Message {
  nlohmann::json body;
  std::vector<UniqueFd> fds;
};
// Makes this thread's receive buffer now (a worker, before it is ready),
// not with its first message.
void prepare_recv_buffer();
// Blocks for the next message; an orderly close of the peer is an error
// naming the peer ("the worker closed its control socket").
Result<Message> recv_message(int sock, const char* peer);

// Docker's stream framing for non-TTY output: [stream, 0, 0, 0, size BE32] + bytes.
std::string frame(uint8_t stream, std::string_view bytes);

}  // namespace vicvmm::serve
