#include "serve/vm_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace vicvmm::serve {

namespace {

constexpr const char* kV1Memory = "/sys/fs/cgroup/memory";

// The cgroup v1 memory hierarchy path of `pid` ("/a/b"), or "".
std::string memory_cgroup_of(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    // "4:memory:/path"
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    if (controllers == "memory" || controllers.find("memory,") == 0 || controllers.find(",memory") != std::string::npos)
      return line.substr(b + 1);
  }
  return "";
}

std::optional<uint64_t> read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t v;
  if (in >> v) return v;
  return std::nullopt;
}

bool write_text(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

VmMemory measure_vm_memory(pid_t pid) {
  VmMemory m;
  std::ifstream in(fmt::format("/proc/{}/smaps_rollup", pid));
  uint64_t rss_kib = 0, anon_kib = 0;
  for (std::string line; std::getline(in, line);) {
    auto value = [&] { return std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10); };
    if (line.starts_with("Rss:")) rss_kib = value();
    if (line.starts_with("Anonymous:")) anon_kib = value();
  }
  m.private_bytes = anon_kib * 1024;
  m.shared_bytes = (rss_kib > anon_kib ? rss_kib - anon_kib : 0) * 1024;
  std::string cg = memory_cgroup_of(std::to_string(pid));
  if (cg.rfind("/vicvmm-") != std::string::npos)
    m.kernel_bytes = read_number(std::string(kV1Memory) + cg + "/memory.kmem.usage_in_bytes");
  return m;
}

bool join_own_memory_cgroup() {
  std::string cg = memory_cgroup_of("self");
  if (cg.empty() || access((std::string(kV1Memory) + cg + "/memory.kmem.usage_in_bytes").c_str(), R_OK) != 0)
    return false;
  std::string child = std::string(kV1Memory) + (cg == "/" ? "" : cg) + fmt::format("/vicvmm-{}", getpid());
  if (::mkdir(child.c_str(), 0755) != 0 && errno != EEXIST) return false;
  if (!write_text(child + "/cgroup.procs", std::to_string(getpid()))) {
    ::rmdir(child.c_str());
    return false;
  }
  return true;
}

void leave_own_memory_cgroup() {
  std::string cg = memory_cgroup_of("self");
  if (cg.rfind("/vicvmm-") == std::string::npos) return;
  std::string parent = std::string(kV1Memory) + parent_of(cg);
  if (write_text(parent + "/cgroup.procs", std::to_string(getpid())))
    ::rmdir((std::string(kV1Memory) + cg).c_str());
}

void remove_memory_cgroup_of(pid_t worker_pid) {
  std::string cg = memory_cgroup_of("self");
  std::string dir = std::string(kV1Memory) + (cg == "/" ? "" : cg) + fmt::format("/vicvmm-{}", worker_pid);
  ::rmdir(dir.c_str());  // only an empty one goes; ENOENT is fine
}

}  // namespace vicvmm::serve
