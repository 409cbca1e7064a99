// Small helpers shared by the unit tests.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include "vmm/memory/guest_memory.h"

namespace vicvmm::test {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

// Anonymous guest RAM (MAP_NORESERVE, so even GiBs cost only what is touched).
inline GuestMemory make_mem(uint64_t size) {
  auto m = GuestMemory::create(size, Backing::Anonymous);
  REQUIRE(m);
  return std::move(*m);
}

// The error message of a failed Result, or a marker when it succeeded.
template <class R>
std::string error_of(const R& r) {
  return r ? std::string("<no error>") : r.error().message;
}

}  // namespace vicvmm::test
