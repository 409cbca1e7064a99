#include "tools/vicvmm/options.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>

namespace vicvmm::cli {

Result<uint64_t> parse_size(const std::string& text) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return err("size '{}' is too large", text);
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) return err("size '{}' is not a number (use e.g. 128M or 1G)", text);
  std::string unit = text.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int shift;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
  else return err("size '{}' has an unknown unit '{}' (use K, M or G)", text, text.substr(i));
  if (shift && value > (UINT64_MAX >> shift)) return err("size '{}' is too large", text);
  return value << shift;
}

Result<uint64_t> parse_guest_memory(const std::string& text) {
  auto size = parse_size(text);
  if (!size) return err("--mem: {}", size.error().message);
  if (*size < kMinGuestMemory || *size > kMaxGuestMemory || *size % 4096)
    return err("--mem {}: must be a multiple of 4 KiB between {} MiB and {} GiB", text, kMinGuestMemory >> 20,
               kMaxGuestMemory >> 30);
  return size;
}

Result<uint64_t> parse_console_limit(const std::string& console, const std::string& limit) {
  if (limit.empty()) return console == "stdout" || console == "none" ? 0 : kDefaultConsoleFileLimit;
  auto size = parse_size(limit);
  if (!size) return err("--console-limit: {}", size.error().message);
  return size;
}

Result<Console> open_console(const std::string& console, const std::string& limit,
                             const std::vector<std::string>& inputs) {
  VIC_ASSIGN(uint64_t cap, parse_console_limit(console, limit));
  if (console == "stdout") return Console{UniqueFd(dup(1)), cap};
  if (console == "none") return Console{UniqueFd(), cap};
  // Checked before anything is opened for writing: O_TRUNC on the kernel
  // image would destroy it (and kill us with SIGBUS through its mapping).
  struct stat out {};
  if (stat(console.c_str(), &out) == 0) {
    for (const auto& in : inputs) {
      struct stat st {};
      if (!in.empty() && stat(in.c_str(), &st) == 0 && st.st_dev == out.st_dev && st.st_ino == out.st_ino)
        return err("--console {}: that is the input {}; an output must not be one of the inputs", console, in);
    }
    // procfs and sysfs files accept the open and fail every write: say so now.
    struct statfs fs {};
    if (statfs(console.c_str(), &fs) == 0 && (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC))
      return err("--console {}: a /proc or /sys file, not a place for console output", console);
    if (S_ISDIR(out.st_mode)) return err("--console {}: is a directory", console);
  }
  // O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of
  // waiting for one forever; with a reader it is a fine console.
  UniqueFd fd(open(console.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0644));
  if (!fd && errno == ENXIO) return err("--console {}: a FIFO that nobody reads", console);
  if (!fd) return sys_err("console file {}", console);
  fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return Console{std::move(fd), cap};
}

std::vector<std::string> default_env(const std::vector<std::string>& user_env) {
  std::vector<std::string> env;
  for (const char* def : {"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=linux"}) {
    std::string_view key = std::string_view(def).substr(0, std::string_view(def).find('=') + 1);
    bool overridden = false;
    for (const auto& e : user_env) overridden |= e.starts_with(key);
    if (!overridden) env.emplace_back(def);
  }
  env.insert(env.end(), user_env.begin(), user_env.end());
  return env;
}

}  // namespace vicvmm::cli
