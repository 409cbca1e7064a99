// The container worker: one process per container VM. `vicvmm serve`
// starts `vicvmm __worker TEMPLATE_DIR` with a control socket as fd 3; the
// worker builds a clone shell over the template's memory (KVM ties a VM to
// the process that made it), says it is ready, and waits. A start message
// brings the container's spec and its log file; the worker runs the clone,
// appends its output to the log in Docker's stream framing, records the
// exit status in the spec's exit file and exits with it. SIGTERM stops the
// VM (status 143). See worker_protocol.h for the messages.
#pragma once

#include <string>

namespace vicvmm::serve {

inline constexpr int kWorkerControlFd = 3;

// Returns the process's exit status.
int worker_main(int control_fd, const std::string& template_dir);

}  // namespace vicvmm::serve
