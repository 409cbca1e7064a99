// `vicvmm bench`: the standard benchmark suite (bench/suite.h) with a
// summary table, Google Benchmark JSON and an SVG of the latency CDFs and
// the density curve. Progress goes to stderr.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "bench/report.h"
#include "bench/soak.h"
#include "bench/suite.h"
#include "bench/svg.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/options.h"

namespace vicvmm::cli {

int cmd_bench(const BenchOptions& o) {
  // The suite re-runs this executable for "restore from file in a new
  // process": that child takes this branch.
  if (!o.restore_child.empty()) return bench::restore_child_main(o.restore_child, o.until);

  auto fail = [](const std::string& m) {
    fmt::print(stderr, "vicvmm: error: {}\n", m);
    return kExitVmmError;
  };
  if (o.soak > 0) {
    auto kvm = Kvm::open();
    if (!kvm) return fail(kvm.error().message);
    fmt::print("{:>10} {:>9} {:>10} {:>12} {:>9}\n", "cycles", "open fds", "RSS KiB", "kernel KiB", "seconds");
    auto samples = bench::run_soak(*kvm, {o.soak, o.soak_every}, [](const bench::SoakSample& s) {
      fmt::print("{:>10} {:>9} {:>10} {:>12} {:>9.1f}\n", s.cycles, s.open_fds, s.rss_kib, s.kernel_kib, s.seconds);
      std::fflush(stdout);
    });
    if (!samples) return fail(samples.error().message);
    if (!o.svg.empty()) {
      std::ofstream out(o.svg);
      out << bench::soak_svg(*samples);
      if (!out.flush()) return fail("writing " + o.svg);
    }
    return 0;
  }
  bench::SuiteOptions so;
  so.quick = o.quick;
  so.linux_guest.kernel = default_kernel();
  so.linux_guest.initrd = default_initrd();
  if (!o.template_name.empty()) {
    auto p = template_path(o.template_name);
    if (!p) return fail(p.error().message);
    if (access(p->c_str(), F_OK) != 0)
      return fail(fmt::format("template '{}' does not exist (create it with: vicvmm template create {})",
                              o.template_name, o.template_name));
    so.template_dir = *p;
    so.template_name = o.template_name;
  }
  std::error_code ec;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return fail("cannot find this executable through /proc/self/exe: " + ec.message());
  so.child_argv = {self, "bench", "--restore-child"};  // + DIR UNTIL (positional)
  so.command_line = o.command_line;
  so.progress = [](const std::string& line) { fmt::print(stderr, "{}\n", line); };

  auto r = bench::run_suite(so);
  if (!r) return fail(r.error().message);
  bench::print_summary(*r, stdout);
  std::fflush(stdout);
  int rc = 0;
  if (!o.json.empty()) {
    if (auto w = bench::write_json(*r, o.json, self); !w) rc = fail(w.error().message);
    else fmt::print(stderr, "wrote {} (Google Benchmark JSON{})\n", o.json,
                    bench::json_uses_libbenchmark() ? "" : ", written without libbenchmark");
  }
  if (!o.svg.empty()) {
    if (auto w = bench::write_svg(*r, o.svg); !w) rc = fail(w.error().message);
    else fmt::print(stderr, "wrote {}\n", o.svg);
  }
  return rc;
}

}  // namespace vicvmm::cli
