#include "tools/vicvmm/options.h"

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

}  // namespace vicvmm::cli
