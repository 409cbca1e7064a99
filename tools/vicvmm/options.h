// Parsing and defaults shared by the vicvmm subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

// Where the tools put the default guest: ${XDG_CACHE_HOME:-$HOME/.cache}/vicvmm.
std::string cache_dir();
// $VICVMM_KERNEL, else <cache>/vmlinux; $VICVMM_INITRD, else <cache>/initrd.cpio.
std::string default_kernel();
std::string default_initrd();

// Where templates live: ${XDG_STATE_HOME:-$HOME/.local/state}/vicvmm/templates.
// ${XDG_STATE_HOME:-$HOME/.local/state}/vicvmm: templates, images, containers.
std::string state_dir();
std::string templates_dir();
// templates_dir()/NAME, after checking NAME is [A-Za-z0-9._-]+ without a leading dot.
Result<std::string> template_path(const std::string& name);

// The environment every command gets unless the user overrides a key.
std::vector<std::string> default_env(const std::vector<std::string>& user_env);


// Exit codes of vicvmm itself (the guest command's own status passes through).
inline constexpr int kExitVmmError = 125;  // bad input or the VMM could not run the guest
inline constexpr int kExitGuestFailed = 126;  // the guest stopped without reporting a status
inline constexpr int kExitTimeout = 124;

}  // namespace vicvmm::cli
