// Building the mailbox page that vic-init reads at start (guest/abi/vicvmm_abi.h):
// the command to run and, for clones, the personality.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "guest/abi/vicvmm_abi.h"
#include "vmm/result.h"

namespace vicvmm {

struct AgentRequest {
  std::vector<std::string> argv;  // empty: the agent runs /bin/sh
  std::vector<std::string> env;   // "KEY=value"
  std::string hostname;
  uint32_t flags = 0;             // VIC_MB_*
  uint32_t clone_id = 0;
  std::array<uint64_t, 4> seed{};
  uint64_t wallclock_ns = 0;
  uint64_t generation = 0;
};

// Fails, naming the culprit, when a string holds a NUL or the whole request
// does not fit in the page.
Result<vic_mailbox> build_mailbox(const AgentRequest& req);

// The inverse, with the same validation vic-init applies (for tests and tools).
Result<AgentRequest> parse_mailbox(const vic_mailbox& mb);

}  // namespace vicvmm
