// Parsing and defaults shared by the vicvmm subcommands.
#pragma once

#include <cstdint>
#include <string>

#include "vmm/result.h"

namespace vicvmm::cli {

// "128M", "1G", "65536", "512K", "2GiB": binary units; errors name the text.
Result<uint64_t> parse_size(const std::string& text);

// Where the tools put the default guest: ${XDG_CACHE_HOME:-$HOME/.cache}/vicvmm.
std::string cache_dir();
// $VICVMM_KERNEL, else <cache>/vmlinux; $VICVMM_INITRD, else <cache>/initrd.cpio.
std::string default_kernel();
std::string default_initrd();

inline constexpr uint64_t kMinGuestMemory = 32ull << 20;  // a kernel plus a small initramfs
inline constexpr uint64_t kMaxGuestMemory = 64ull << 30;

// Exit codes of vicvmm itself (the guest command's own status passes through).
inline constexpr int kExitVmmError = 125;  // bad input or the VMM could not run the guest
inline constexpr int kExitGuestFailed = 126;  // the guest stopped without reporting a status
inline constexpr int kExitTimeout = 124;

}  // namespace vicvmm::cli
