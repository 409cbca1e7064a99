// libFuzzer target: the command line's value parsers (tools/vicvmm/options.cc)
// and `-p` / docker's PortBindings (vmm/net/port_forward.cc), which serve
// also feeds from API requests. The first byte picks the parser; the rest
// is the text.
//   parse_size: checked against a model (digits then K/M/G[B|iB]/B, any
//     case, no overflow); parse_guest_memory: within the limits, 4 KiB
//     aligned; parse_console_limit: a file's default cap, else parse_size;
//   parse_publish: a consecutive range of host ports to one guest port,
//     1..65535, an IPv4 address; printed back and parsed again, the same.
// Run: tools/fuzz cli_options [SECONDS]
#include <arpa/inet.h>

#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "tests/fuzz/fuzz_check.h"
#include "tools/vicvmm/options.h"
#include "vmm/net/port_forward.h"

using namespace vicvmm;

namespace {

std::optional<uint64_t> model_size(const std::string& t) {
  size_t i = 0;
  unsigned __int128 v = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
    v = v * 10 + static_cast<unsigned>(t[i] - '0');
    if (v > UINT64_MAX) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string unit;
  for (char c : t.substr(i)) unit += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
  int shift = -1;
  if (unit.empty() || unit == "B") shift = 0;
  for (auto [prefix, s] : {std::pair{'K', 10}, {'M', 20}, {'G', 30}})
    if (unit == std::string(1, prefix) || unit == std::string(1, prefix) + "B" || unit == std::string(1, prefix) + "IB")
      shift = s;
  if (shift < 0) return std::nullopt;
  v <<= shift;
  if (v > UINT64_MAX) return std::nullopt;
  return static_cast<uint64_t>(v);
}

void check_publish(const std::string& text) {
  auto p = net::parse_publish(text);
  if (!p) return;
  FUZZ_CHECK(!p->empty() && p->size() <= 65535);
  const auto& first = p->front();
  in_addr a{};
  FUZZ_CHECK(inet_pton(AF_INET, first.host_ip.c_str(), &a) == 1);
  for (size_t i = 0; i < p->size(); ++i) {
    const auto& f = (*p)[i];
    FUZZ_CHECK(f.guest_port >= 1 && f.host_port >= 1);
    FUZZ_CHECK(f.guest_port == first.guest_port && f.udp == first.udp && f.host_ip == first.host_ip);
    FUZZ_CHECK(f.host_port == first.host_port + i);
  }
  std::string again = fmt::format("{}:{}-{}:{}/{}", first.host_ip, first.host_port, p->back().host_port,
                                  first.guest_port, first.udp ? "udp" : "tcp");
  auto q = net::parse_publish(again);
  FUZZ_CHECK(q.has_value() && q->size() == p->size());
  for (size_t i = 0; i < p->size(); ++i) {
    FUZZ_CHECK((*q)[i].host_ip == (*p)[i].host_ip && (*q)[i].host_port == (*p)[i].host_port);
    FUZZ_CHECK((*q)[i].guest_port == (*p)[i].guest_port && (*q)[i].udp == (*p)[i].udp);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto got = cli::parse_size(text);
      auto want = model_size(text);
      FUZZ_CHECK(got.has_value() == want.has_value());
      if (got) FUZZ_CHECK(*got == *want);
      else FUZZ_CHECK(!got.error().message.empty());
      break;
    }
    case 1: {
      auto got = cli::parse_guest_memory(text);
      if (got) FUZZ_CHECK(*got >= kMinGuestMemory && *got <= kMaxGuestMemory && *got % 4096 == 0);
      break;
    }
    case 2: {
      auto got = cli::parse_console_limit("file", text);
      if (text.empty()) FUZZ_CHECK(got.has_value() && *got == cli::kDefaultConsoleFileLimit);
      else FUZZ_CHECK(got.has_value() == model_size(text).has_value());
      break;
    }
    default:
      check_publish(text);
  }
  return 0;
}
