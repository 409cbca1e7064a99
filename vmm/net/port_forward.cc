#include "vmm/net/port_forward.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace vicvmm::net {

namespace {

Result<uint16_t> parse_port(const std::string& text, const std::string& whole) {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), ::isdigit))
    return err("-p {}: '{}' is not a port number", whole, text);
  unsigned long v = std::stoul(text);
  if (v == 0 || v > 65535) return err("-p {}: port {} is outside 1..65535", whole, v);
  return static_cast<uint16_t>(v);
}

}  // namespace

Result<std::vector<PortForward>> parse_publish(const std::string& text) {
  std::string rest = text;
  bool udp = false;
  if (auto slash = rest.rfind('/'); slash != std::string::npos) {
    std::string proto = rest.substr(slash + 1);
    if (proto == "udp")
      udp = true;
    else if (proto != "tcp")
      return err("-p {}: protocol '{}' is neither tcp nor udp", text, proto);
    rest.resize(slash);
  }
  auto last = rest.rfind(':');
  if (last == std::string::npos) return err("-p {}: expected [HOSTIP:]HOSTPORT:GUESTPORT", text);
  VIC_ASSIGN(uint16_t guest_port, parse_port(rest.substr(last + 1), text));
  std::string host = rest.substr(0, last);
  std::string ip = "127.0.0.1";
  if (auto colon = host.rfind(':'); colon != std::string::npos) {
    ip = host.substr(0, colon);
    host = host.substr(colon + 1);
    in_addr a{};
    if (inet_pton(AF_INET, ip.c_str(), &a) != 1) return err("-p {}: '{}' is not an IPv4 address", text, ip);
  }
  uint16_t first, lastp;
  if (auto dash = host.find('-'); dash != std::string::npos) {
    VIC_ASSIGN(first, parse_port(host.substr(0, dash), text));
    VIC_ASSIGN(lastp, parse_port(host.substr(dash + 1), text));
    if (lastp < first) return err("-p {}: the range {}-{} runs backwards", text, first, lastp);
  } else {
    VIC_ASSIGN(first, parse_port(host, text));
    lastp = first;
  }
  std::vector<PortForward> v;
  for (uint32_t p = first; p <= lastp; ++p) v.push_back({udp, ip, static_cast<uint16_t>(p), guest_port});
  return v;
}

}  // namespace vicvmm::net
