// Small helpers shared by serve's managers.
#pragma once

#include <sys/random.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/result.h"

namespace vicvmm::serve {

// An error whose errno picks the API status: ENOENT 404, EEXIST/EBUSY 409,
// EINVAL 400, anything else 500.
inline tl::unexpected<Error> api_err(int code, std::string message) {
  return tl::unexpected(Error{std::move(message), code});
}

// `bytes` random bytes as lowercase hex (docker's 64-digit ids).
inline std::string random_hex(size_t bytes) {
  std::vector<uint8_t> b(bytes);
  if (getrandom(b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) return {};
  std::string s;
  for (uint8_t x : b) s += fmt::format("{:02x}", x);
  return s;
}

}  // namespace vicvmm::serve
