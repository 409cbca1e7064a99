#include "clone/locations.h"

#include <cctype>
#include <cstdlib>

namespace vicvmm {

std::string cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/vicvmm";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.cache/vicvmm";
}

std::string default_kernel() {
  if (const char* k = std::getenv("VICVMM_KERNEL"); k && *k) return k;
  return cache_dir() + "/vmlinux";
}

std::string default_initrd() {
  if (const char* k = std::getenv("VICVMM_INITRD"); k && *k) return k;
  return cache_dir() + "/initrd.cpio";
}

std::string state_dir() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/vicvmm";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.local/state/vicvmm";
}

std::string templates_dir() { return state_dir() + "/templates"; }

Result<std::string> template_path(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.';
  for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  if (!ok) return err("template name '{}': use 1-64 of A-Z a-z 0-9 . _ - (not starting with '.')", name);
  return templates_dir() + "/" + name;
}

}  // namespace vicvmm
