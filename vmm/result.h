// Error handling for libvicvmm: every fallible call returns Result<T>.
// The library never throws across its boundary and never exits; the
// message names the object and the cause so callers can print it as-is.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace vicvmm {

struct Error {
  std::string message;
  int sys_errno = 0;  // errno of the failing syscall, 0 if not a syscall error

  const std::string& what() const { return message; }
};

template <class T = void>
using Result = tl::expected<T, Error>;

// Builds an Error from a format string: err("kernel {}: not an ELF file", path).
template <class... Args>
tl::unexpected<Error> err(fmt::format_string<Args...> f, Args&&... args) {
  return tl::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), 0});
}

// Same, appending ": strerror(errno)" of the current errno.
template <class... Args>
tl::unexpected<Error> sys_err(fmt::format_string<Args...> f, Args&&... args) {
  int e = errno;
  return tl::unexpected(
      Error{fmt::format("{}: {}", fmt::format(f, std::forward<Args>(args)...), std::strerror(e)), e});
}

// Prefixes context onto an error travelling up: return ctx(r.error(), "loading kernel").
inline tl::unexpected<Error> with_context(Error e, std::string_view context) {
  e.message = fmt::format("{}: {}", context, e.message);
  return tl::unexpected(std::move(e));
}

}  // namespace vicvmm

// Propagate an error from an expression returning Result<...>.
#define VIC_TRY(expr)                                         \
  do {                                                        \
    auto vic_try_r_ = (expr);                                 \
    if (!vic_try_r_) return tl::unexpected(vic_try_r_.error()); \
  } while (0)

#define VIC_CONCAT_INNER(a, b) a##b
#define VIC_CONCAT(a, b) VIC_CONCAT_INNER(a, b)
// Declare `var` from a Result<T> expression, or propagate its error.
#define VIC_ASSIGN(var, expr) VIC_ASSIGN_IMPL(VIC_CONCAT(vic_r_, __LINE__), var, expr)
#define VIC_ASSIGN_IMPL(tmp, var, expr)                \
  auto tmp = (expr);                                   \
  if (!tmp) return tl::unexpected(std::move(tmp.error())); \
  var = std::move(*tmp)
