#include "serve/overview.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "serve/vm_memory.h"
#include "vmm/machine.h"

namespace vicvmm::serve {

using nlohmann::json;

namespace {

// utime + stime of the VMM process (every thread: vCPU, I/O, network).
uint64_t cpu_ns(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  unsigned long utime = 0, stime = 0;
  if (sscanf(text.c_str() + close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
    return 0;
  return (utime + stime) * (1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
}

}  // namespace

json overview(const std::vector<Container>& containers, const std::vector<image::Image>& images,
              const std::string& template_name) {
  const uint64_t now = realtime_ns();
  json list = json::array();
  uint64_t private_sum = 0, kernel_sum = 0, shared_sum = 0, shared_once = 0;
  size_t running = 0;
  for (const auto& c : containers) {
    json ports = json::array();
    for (const auto& p : c.ports)
      ports.push_back({{"host_ip", p.host_ip}, {"host_port", p.host_port}, {"guest_port", p.guest_port},
                       {"proto", p.udp ? "udp" : "tcp"}});
    json row = {{"id", c.id},
                {"name", c.name},
                {"image", c.image_ref},
                {"image_id", c.image_id},
                {"template", c.spec.template_dir.empty() ? template_name
                                                         : c.spec.template_dir.substr(c.spec.template_dir.rfind('/') + 1)},
                {"state", c.state},
                {"exit_code", c.exit_code},
                {"error", c.error},
                {"command", c.spec.argv},
                {"ports", ports},
                {"created_ns", c.created_ns},
                {"uptime_s", c.state == "running" && c.started_ns ? (now - c.started_ns) / 1e9 : 0.0}};
    if (c.state == "running" && c.pid > 0) {
      VmMemory m = measure_vm_memory(c.pid);
      row["pid"] = c.pid;
      row["cpu_ns"] = cpu_ns(c.pid);
      row["memory"] = {{"private", m.private_bytes},
                       {"shared", m.shared_bytes},
                       {"kernel", m.kernel_bytes ? json(*m.kernel_bytes) : json(nullptr)}};
      private_sum += m.private_bytes;
      kernel_sum += m.kernel_bytes.value_or(0);
      shared_sum += m.shared_bytes;
      shared_once = std::max(shared_once, m.shared_bytes);  // one template: its pages once
      ++running;
    }
    list.push_back(row);
  }
  json imgs = json::array();
  for (const auto& img : images) {
    json layers = json::array();
    for (const auto& l : img.layers) layers.push_back({{"digest", l.digest}, {"size", l.size}, {"media_type", l.media_type}});
    json users = json::array();
    for (const auto& c : containers)
      if (c.image_id == img.id) users.push_back(c.name);
    imgs.push_back({{"id", img.id},
                    {"tags", img.tags},
                    {"size", img.size},
                    {"disk_size", img.erofs_size},
                    {"created", img.created},
                    {"layers", layers},
                    {"containers", users}});
  }
  json host = {{"containers", containers.size()},
               {"running", running},
               {"memory_used", private_sum + kernel_sum + shared_once},
               {"memory_without_sharing", private_sum + kernel_sum + shared_sum},
               {"private", private_sum},
               {"kernel", kernel_sum},
               {"shared_once", shared_once},
               {"time_ns", now}};
  return {{"host", host}, {"containers", list}, {"images", imgs}};
}

}  // namespace vicvmm::serve
