// Building the mailbox that vic-init reads at start (guest/abi/vicvmm_abi.h):
// the command to run and, for clones, the personality.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "guest/abi/vicvmm_abi.h"
#include "vmm/result.h"

namespace vicvmm {

class GuestMemory;

struct AgentRequest {
  std::vector<std::string> argv;  // empty: the agent runs /bin/sh
  std::vector<std::string> env;   // "KEY=value"
  std::string hostname;
  std::string workdir;            // "" = stay where the agent is ("/")
  std::string user;               // "", "uid[:gid]" or "name[:group]" (image root only)
  uint32_t flags = 0;             // VIC_MB_*
  uint32_t clone_id = 0;
  std::array<uint64_t, 4> seed{};
  uint64_t wallclock_ns = 0;
  uint64_t generation = 0;
};

// The page plus, when the strings outgrow it, the extension area's bytes.
struct Mailbox {
  vic_mailbox page;
  std::vector<char> ext;  // empty unless page.flags has VIC_MB_EXT_STRINGS
};

// Fails, naming the culprit, when a string holds a NUL or the whole request
// does not fit in VIC_MAILBOX_EXT_SIZE bytes of strings.
Result<Mailbox> build_mailbox(const AgentRequest& req);

// Writes the page (and the extension, if any) into guest memory. Returns
// the guest page frame numbers written, for callers that track dirt.
Result<std::vector<uint64_t>> write_mailbox(GuestMemory& mem, const Mailbox& mb);

// The inverse, with the same validation vic-init applies (for tests and tools).
// `ext` is the extension area's content when the page says its strings are there.
Result<AgentRequest> parse_mailbox(const vic_mailbox& mb, std::span<const char> ext = {});

}  // namespace vicvmm
