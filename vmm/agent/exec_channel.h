// The host side of the exec channel (guest/abi/vicvmm_abi.h): more
// processes in a running VM, each a session multiplexed over the
// virtio-console's exec ports. `docker exec` is one session.
//
// The guest's frames are untrusted: a frame longer than the protocol
// allows breaks the channel (every session ends with an error), an unknown
// session or frame type is ignored. Nothing the guest sends can make the
// host allocate more than one frame's worth.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "guest/abi/vicvmm_abi.h"
#include "vmm/result.h"

namespace vicvmm {

namespace virtio {
class Console;
}

struct ExecRequest {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::vector<std::string> env;   // "KEY=value"; empty: the agent's default
  std::string workdir, user;      // "" = / and root
  bool tty = false;               // a pseudo-terminal: one raw output stream
  bool open_stdin = false;        // write_stdin() follows; else /dev/null
};

struct ExecEvents {
  // stream 1 = stdout (or the tty), 2 = stderr; on the VM's I/O thread.
  std::function<void(uint32_t stream, std::span<const uint8_t> bytes)> output;
  std::function<void(uint32_t guest_pid)> started;
  // The session is over: `status` is a wait status as the shell reports it
  // (0-255, 128 + signal) or, with an error, the reason the channel broke.
  std::function<void(int status, const std::string& error)> exited;
};

// Sends and parses frames; the caller owns the transport (tests feed it
// bytes directly). `send` must take whole buffers or fail.
class ExecChannel {
 public:
  using SendFn = std::function<Result<>(std::span<const uint8_t>)>;
  explicit ExecChannel(SendFn send) : send_(std::move(send)) {}
  // Over a console's exec-in port.
  static std::unique_ptr<ExecChannel> over(std::shared_ptr<virtio::Console> console);

  // Starts a session; events arrive until exited(). Error: bad request
  // (no argv, a NUL in a string, too large), too many sessions, or the
  // channel is closed.
  Result<uint32_t> start(const ExecRequest& req, ExecEvents events);
  Result<> write_stdin(uint32_t id, std::span<const uint8_t> bytes);
  Result<> close_stdin(uint32_t id);
  Result<> signal(uint32_t id, int sig);
  Result<> resize(uint32_t id, uint16_t rows, uint16_t cols);

  // What the guest wrote to the exec-out port, in order (the I/O thread).
  void on_guest_bytes(std::span<const uint8_t> bytes);
  // The VM stopped (or was reset): every session ends with `reason`; later
  // starts fail until reopen().
  void close(const std::string& reason);
  void reopen();
  size_t sessions() const;

 private:
  Result<> send_frame(uint32_t type, uint32_t id, std::span<const uint8_t> payload);
  void deliver(const vic_exec_frame& h, std::span<const uint8_t> payload);

  SendFn send_;
  std::mutex send_mu_;  // one frame at a time on the port
  mutable std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<ExecEvents>> sessions_;
  uint32_t next_id_ = 1;
  bool closed_ = false;
  std::string closed_reason_;
  std::vector<uint8_t> partial_;  // the I/O thread's unparsed bytes
};

}  // namespace vicvmm
