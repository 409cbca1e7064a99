// Parsing and defaults shared by the vicvmm subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "clone/locations.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::cli {

// "128M", "1G", "65536", "512K", "2GiB": binary units; errors name the text.
Result<uint64_t> parse_size(const std::string& text);

// --mem: a size within [kMinGuestMemory, kMaxGuestMemory], 4 KiB aligned.
Result<uint64_t> parse_guest_memory(const std::string& text);

// --console-limit: the bytes of guest console output written before the rest
// is dropped (0: no cap). Unset, a file gets kDefaultConsoleFileLimit, so a
// flooding guest cannot fill the host's disk; stdout and none get no cap.
inline constexpr uint64_t kDefaultConsoleFileLimit = 64ull << 20;
Result<uint64_t> parse_console_limit(const std::string& console, const std::string& limit);

// --console and --console-limit: "stdout" (a dup of fd 1), "none" (an
// invalid fd: output is dropped) or a file path, created or truncated only
// once the limit has parsed.
struct Console {
  UniqueFd fd;
  uint64_t limit = 0;  // MachineConfig::console_limit
};
// `inputs` are the files the VM reads (kernel, initrd, disks): the console
// may not be one of them.
Result<Console> open_console(const std::string& console, const std::string& limit,
                             const std::vector<std::string>& inputs = {});

// Where things live (clone/locations.h), under the names the CLI uses.
using vicvmm::cache_dir;
using vicvmm::default_initrd;
using vicvmm::default_kernel;
using vicvmm::state_dir;
using vicvmm::template_path;
using vicvmm::templates_dir;

// The environment every command gets unless the user overrides a key.
std::vector<std::string> default_env(const std::vector<std::string>& user_env);


// Exit codes of vicvmm itself (the guest command's own status passes through).
inline constexpr int kExitVmmError = 125;  // bad input or the VMM could not run the guest
inline constexpr int kExitGuestFailed = 126;  // the guest stopped without reporting a status
inline constexpr int kExitTimeout = 124;

}  // namespace vicvmm::cli
