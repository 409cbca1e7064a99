// Published ports (`-p`, docker's PortBindings): host TCP/UDP ports that
// forward to a port of the guest. Parsed apart from the backend (no
// libslirp here), so the parser can be fuzzed on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/result.h"

namespace vicvmm::net {

struct PortForward {
  bool udp = false;
  std::string host_ip = "127.0.0.1";
  uint16_t host_port = 0;
  uint16_t guest_port = 0;
};

// `-p [HOSTIP:]HOSTPORT[-HOSTPORT2]:GUESTPORT[/tcp|udp]`: one forward per
// host port in the range (a range gives clone i the i-th port).
Result<std::vector<PortForward>> parse_publish(const std::string& text);

}  // namespace vicvmm::net
