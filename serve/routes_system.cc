// /_ping, /version, /info: what `docker version` and `docker info` show,
// with the host's real numbers.
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "serve/containers.h"
#include "serve/routes.h"

namespace vicvmm::serve {

namespace {

struct HostFacts {
  std::string kernel, machine, arch, hostname, os = "Linux";
  long ncpu = 1;
  uint64_t mem_total = 0;
};

HostFacts host_facts() {
  HostFacts h;
  struct utsname u{};
  if (uname(&u) == 0) {
    h.kernel = u.release;
    h.machine = u.machine;
  }
  // Docker names architectures the Go way.
  h.arch = h.machine == "x86_64" ? "amd64" : h.machine == "aarch64" ? "arm64" : h.machine;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) h.hostname = host;
  h.ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  struct sysinfo si{};
  if (sysinfo(&si) == 0) h.mem_total = static_cast<uint64_t>(si.totalram) * si.mem_unit;
  std::ifstream f("/etc/os-release");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("PRETTY_NAME=", 0) != 0) continue;
    std::string v = line.substr(12);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'')) v = v.substr(1, v.size() - 2);
    h.os = v;
  }
  return h;
}

std::string now_rfc3339() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm{};
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09d}Z", buf, ts.tv_nsec);
}

// The server leaves the body out of a HEAD answer, keeping its length.
Response ping() {
  Response r;
  r.content_type = "text/plain; charset=utf-8";
  r.body = "OK";
  r.headers = {{"Cache-Control", "no-cache, no-store, must-revalidate"}, {"Pragma", "no-cache"}};
  return r;
}

}  // namespace

void add_system_routes(Router& r, const Context& ctx) {
  r.add(http::verb::get, "/_ping", [](Request&, Connection&) -> asio::awaitable<Response> { co_return ping(); });
  r.add(http::verb::head, "/_ping", [](Request&, Connection&) -> asio::awaitable<Response> { co_return ping(); });

  r.add(http::verb::get, "/version", [ctx](Request&, Connection&) -> asio::awaitable<Response> {
    HostFacts h = host_facts();
    nlohmann::json details = {{"ApiVersion", kApiVersion},
                              {"MinAPIVersion", fmt::format("1.{}", kMinApiMinor)},
                              {"Arch", h.arch},
                              {"Os", "linux"},
                              {"KernelVersion", h.kernel},
                              {"GitCommit", ""},
                              {"GoVersion", "n/a (C++)"},
                              {"BuildTime", ""},
                              {"Experimental", "false"}};
    co_return json_response({{"Platform", {{"Name", "vicvmm"}}},
                             {"Components", {{{"Name", "Engine"}, {"Version", ctx.version}, {"Details", details}}}},
                             {"Version", ctx.version},
                             {"ApiVersion", kApiVersion},
                             {"MinAPIVersion", fmt::format("1.{}", kMinApiMinor)},
                             {"GitCommit", ""},
                             {"GoVersion", "n/a (C++)"},
                             {"Os", "linux"},
                             {"Arch", h.arch},
                             {"KernelVersion", h.kernel},
                             {"BuildTime", ""}});
  });

  r.add(http::verb::get, "/info", [ctx](Request&, Connection& conn) -> asio::awaitable<Response> {
    image::Store* store = ctx.store;
    auto job = [store]() -> Result<size_t> {
      VIC_ASSIGN(auto list, store->list());
      return list.size();
    };
    auto images = co_await conn.blocking(job);
    if (!images) co_return error_response(500, images.error().message);
    HostFacts h = host_facts();
    nlohmann::json empty_list = nlohmann::json::array();
    co_return json_response({
        {"ID", ""},
        {"Containers", ctx.containers ? ctx.containers->count("") : 0},
        {"ContainersRunning", ctx.containers ? ctx.containers->count("running") : 0},
        {"ContainersPaused", 0},
        {"ContainersStopped", ctx.containers ? ctx.containers->count("exited") : 0},
        {"Images", *images},
        {"Driver", "erofs"},
        {"DriverStatus", nlohmann::json::array({nlohmann::json::array({"Store", store->root()})})},
        {"Plugins", {{"Volume", empty_list}, {"Network", empty_list}, {"Authorization", nullptr}, {"Log", empty_list}}},
        {"MemoryLimit", true},
        {"SwapLimit", false},
        {"KernelMemory", false},
        {"CpuCfsPeriod", false},
        {"CpuCfsQuota", false},
        {"CPUShares", false},
        {"CPUSet", false},
        {"PidsLimit", false},
        {"IPv4Forwarding", false},
        {"BridgeNfIptables", false},
        {"BridgeNfIp6tables", false},
        {"Debug", false},
        {"NFd", 0},
        {"OomKillDisable", false},
        {"NGoroutines", 0},
        {"SystemTime", now_rfc3339()},
        {"LoggingDriver", ""},
        {"CgroupDriver", "none"},
        {"CgroupVersion", ""},
        {"NEventsListener", 0},
        {"KernelVersion", h.kernel},
        {"OperatingSystem", h.os},
        {"OSVersion", ""},
        {"OSType", "linux"},
        {"Architecture", h.machine},
        {"IndexServerAddress", ""},
        {"RegistryConfig", nullptr},
        {"NCPU", h.ncpu},
        {"MemTotal", h.mem_total},
        {"GenericResources", nullptr},
        {"DockerRootDir", store->root()},
        {"HttpProxy", ""},
        {"HttpsProxy", ""},
        {"NoProxy", ""},
        {"Name", h.hostname},
        {"Labels", empty_list},
        {"ExperimentalBuild", false},
        {"ServerVersion", ctx.version},
        {"Runtimes", {{"vicvmm", {{"path", "vicvmm"}}}}},
        {"DefaultRuntime", "vicvmm"},
        {"Swarm", {{"NodeID", ""}, {"NodeAddr", ""}, {"LocalNodeState", "inactive"}, {"ControlAvailable", false},
                   {"Error", ""}, {"RemoteManagers", nullptr}}},
        {"LiveRestoreEnabled", false},
        {"Isolation", ""},
        {"InitBinary", ""},
        {"ContainerdCommit", {{"ID", ""}, {"Expected", ""}}},
        {"RuncCommit", {{"ID", ""}, {"Expected", ""}}},
        {"InitCommit", {{"ID", ""}, {"Expected", ""}}},
        {"SecurityOptions", empty_list},
        {"Warnings", empty_list},
    });
  });
}

}  // namespace vicvmm::serve
