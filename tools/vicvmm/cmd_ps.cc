// `vicvmm ps`: the container VMs of `vicvmm serve` and what each costs the
// host (the same figures as the web page at /ui and `docker stats`), read
// from the state directory and /proc, so it works with serve down too.
#include "serve/containers.h"
#include "serve/overview.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/image_ref.h"
#include "tools/vicvmm/options.h"

namespace vicvmm::cli {

namespace {
std::string mib(const nlohmann::json& v) {
  return v.is_number() ? fmt::format("{:.1f}M", v.get<double>() / 1048576.0) : "?";
}
}  // namespace

int cmd_ps(bool all, bool json_out) {
  auto store = image::Store::open(image::Store::default_root());
  if (!store) {
    fmt::print(stderr, "vicvmm: error: {}\n", store.error().message);
    return kExitVmmError;
  }
  auto images = store->list();
  if (!images) {
    fmt::print(stderr, "vicvmm: error: {}\n", images.error().message);
    return kExitVmmError;
  }
  auto base = base_template_name();
  auto o = serve::overview(serve::ContainerManager::read_records(state_dir() + "/containers"), *images,
                           base ? *base : "?");
  if (json_out) {
    fmt::print("{}\n", o.dump(2));
    return 0;
  }
  fmt::print("{:<14} {:<18} {:<22} {:<8} {:>8} {:>5} {:<24} {:>8} {:>9} {:>9} {:>9}\n", "CONTAINER", "NAME", "IMAGE",
             "STATE", "UPTIME", "EXIT", "PORTS", "CPU", "PRIVATE", "SHARED", "KERNEL");
  for (const auto& c : o["containers"]) {
    const std::string state = c["state"];
    if (!all && state != "running") continue;
    std::string ports;
    for (const auto& p : c["ports"])
      ports += fmt::format("{}{}:{}->{}", ports.empty() ? "" : ",", p["host_ip"].get<std::string>(),
                           p["host_port"].get<int>(), p["guest_port"].get<int>());
    const bool running = state == "running";
    const auto& mem = running ? c["memory"] : nlohmann::json::object();
    fmt::print("{:<14} {:<18} {:<22} {:<8} {:>8} {:>5} {:<24} {:>8} {:>9} {:>9} {:>9}\n",
               c["id"].get<std::string>().substr(0, 12), c["name"].get<std::string>(), c["image"].get<std::string>(),
               state, running ? fmt::format("{:.0f}s", c["uptime_s"].get<double>()) : "",
               state == "exited" ? std::to_string(c["exit_code"].get<int>()) : "", ports.empty() ? "-" : ports,
               running ? fmt::format("{:.2f}s", c["cpu_ns"].get<double>() / 1e9) : "",
               running ? mib(mem["private"]) : "", running ? mib(mem["shared"]) : "", running ? mib(mem["kernel"]) : "");
  }
  const auto& h = o["host"];
  fmt::print("\n{} running of {} containers; host memory used {} (private {} + kernel {} + template pages once {}); "
             "without sharing {}\n",
             h["running"].get<int>(), h["containers"].get<int>(), mib(h["memory_used"]), mib(h["private"]),
             mib(h["kernel"]), mib(h["shared_once"]), mib(h["memory_without_sharing"]));
  return 0;
}

}  // namespace vicvmm::cli
