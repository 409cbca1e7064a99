#include "bench/report.h"

#include <cmath>
#include <ctime>
#include <fstream>
#include <iostream>
#include <numeric>

#ifdef VICBENCH_HAVE_GBENCH
#include <benchmark/benchmark.h>
#else
#include <nlohmann/json.hpp>
#endif

namespace vicvmm::bench {

std::string format_us(double us) {
  if (us < 1000) return fmt::format("{:.0f} us", us);
  if (us < 1e6) return fmt::format("{:.1f} ms", us / 1e3);
  return fmt::format("{:.2f} s", us / 1e6);
}

void print_summary(const SuiteResults& r, std::FILE* out) {
  const auto& m = r.machine;
  fmt::print(out, "\nvicvmm bench ({}): {} x {} ({} host, {}), {} RAM; load {:.2f} -> {:.2f}; {:.0f} s\n", r.mode,
             m.nproc, m.cpu_model, m.host_kind, m.kernel, m.mem_total, m.load_start, m.load_end, r.wall_s);
  fmt::print(out, "\n{:<72} {:>5} {:>9} {:>9} {:>9} {:>9}\n", "latency", "n", "p50", "p90", "p99", "max");
  for (const auto& d : r.dists) {
    if (d.us.empty() || d.detail) continue;
    Percentiles p = d.p();
    fmt::print(out, "  {:<70} {:>5} {:>9} {:>9} {:>9} {:>9}\n", d.label, p.count, format_us(p.p50),
               format_us(p.p90), format_us(p.p99), format_us(p.max));
  }
  auto p50 = [&](const std::string& n) {
    const Dist* d = r.dist(n);
    return d && !d->us.empty() ? format_us(d->p().p50) : std::string("-");
  };
  fmt::print(out, "\n{:<40} {:>14} {:>14} {:>14} {:>14}\n", "clone timeline (p50 from the request)", "shell in hand",
             "start() done", "first KVM_RUN", "READY");
  for (const char* g : {"tiny", "linux"})
    for (const char* pool : {"pool", "no_pool"}) {
      std::string pre = fmt::format("clone/{}/{}", g, pool);
      if (!r.dist(pre + "/first_instruction")) continue;
      fmt::print(out, "  {:<38} {:>14} {:>14} {:>14} {:>14}\n", fmt::format("{}, {}", g, pool), p50(pre + "/acquired"),
                 p50(pre + "/started"), p50(pre + "/first_instruction"), p50(pre + "/ready"));
    }
  if (r.dist("anatomy/01")) {
    fmt::print(out, "\n{:<72} {:>9} {:>9} {:>9}\n", "anatomy of a no-pool clone (tiny), step by step", "p50", "p90",
               "p99");
    for (int i = 1; const Dist* d = r.dist(fmt::format("anatomy/{:02}", i)); ++i) {
      Percentiles p = d->p();
      fmt::print(out, "  {:<70} {:>9} {:>9} {:>9}\n", d->label, format_us(p.p50), format_us(p.p90), format_us(p.p99));
    }
  }
  fmt::print(out, "\n{:<72} {:>16}\n", "throughput, memory, reset fit", "value");
  for (const auto& s : r.scalars) {
    int prec = std::fabs(s.value) >= 100 ? 0 : std::fabs(s.value) >= 1 ? 2 : 3;
    fmt::print(out, "  {:<70} {:>10.{}f} {}\n", s.label, s.value, prec, s.unit);
  }
  fmt::print(out, "\nratios of medians (both sides measured in this run, alternated)\n");
  for (const auto& q : r.ratios)
    fmt::print(out, "  {:<76} {:>9.1f}x  ({} pairs)\n", q.label, q.value, q.pairs);
  fmt::print(out, "\ntargets\n");
  for (const auto& t : r.targets) {
    fmt::print(out, "  [{}] {}: {}\n", t.met ? " met " : "MISSED", t.target, t.measured);
    if (!t.met) fmt::print(out, "           bound: {}\n", t.bound);
  }
  for (const auto& n : r.notes) fmt::print(out, "\nnote: {}\n", n);
  fmt::print(out, "\n");
}

namespace {

struct Counter {
  std::string name;
  double value;
};

struct RunRow {
  std::string name;
  std::string label;
  bool aggregate = false;
  std::string aggregate_name;
  int64_t iterations = 1;
  double real_s_total = 0;  // accumulated seconds over all iterations
  std::vector<Counter> counters;
};

std::vector<RunRow> rows_of(const SuiteResults& r) {
  std::vector<RunRow> rows;
  for (const auto& d : r.dists) {
    if (d.us.empty()) continue;
    Percentiles p = d.p();
    double sum = std::accumulate(d.us.begin(), d.us.end(), 0.0);
    RunRow it;
    it.name = d.name;
    it.label = d.label;
    it.iterations = static_cast<int64_t>(d.us.size());
    it.real_s_total = sum / 1e6;
    it.counters = {{"p50_us", p.p50}, {"p90_us", p.p90}, {"p99_us", p.p99}, {"min_us", p.min}, {"max_us", p.max}};
    rows.push_back(it);
    RunRow med;
    med.name = d.name;
    med.label = d.label;
    med.aggregate = true;
    med.aggregate_name = "median";
    med.iterations = 1;
    med.real_s_total = p.p50 / 1e6;
    rows.push_back(med);
  }
  for (const auto& s : r.scalars) {
    RunRow row;
    row.name = s.name;
    row.label = fmt::format("{} [{}]", s.label, s.unit);
    if (s.unit == "s") row.real_s_total = s.value;
    else if (s.unit == "ms") row.real_s_total = s.value / 1e3;
    else if (s.unit == "us") row.real_s_total = s.value / 1e6;
    row.counters = {{"value", s.value}};
    rows.push_back(row);
  }
  for (const auto& q : r.ratios) {
    RunRow row;
    row.name = q.name;
    row.label = fmt::format("{} (median {} / median {})", q.label, q.a, q.b);
    row.iterations = static_cast<int64_t>(std::max<size_t>(1, q.pairs));
    row.counters = {{"ratio", q.value}, {"pairs", static_cast<double>(q.pairs)}};
    rows.push_back(row);
  }
  for (size_t i = 0; i < r.targets.size(); ++i) {
    const auto& t = r.targets[i];
    RunRow row;
    row.name = fmt::format("target/{:02}", i + 1);
    row.label = fmt::format("{}: {}: {}{}", t.met ? "met" : "MISSED", t.target, t.measured,
                            t.met ? "" : " (bound: " + t.bound + ")");
    row.counters = {{"met", t.met ? 1.0 : 0.0}};
    rows.push_back(row);
  }
  for (const auto& c : r.density) {
    for (const auto& p : c.points) {
      RunRow row;
      row.name = fmt::format("density/{}/{}", c.name, static_cast<int>(p.clones));
      row.label = c.label;
      row.counters = {{"clones", p.clones}, {"user_mib", p.user_mib}, {"kernel_mib", p.kernel_mib},
                      {"total_mib", p.user_mib + p.kernel_mib}};
      rows.push_back(row);
    }
  }
  return rows;
}

std::vector<std::pair<std::string, std::string>> context_of(const SuiteResults& r) {
  return {{"vicvmm_mode", r.mode},
          {"vicvmm_command", r.command_line},
          {"vicvmm_host_kind", r.machine.host_kind},
          {"vicvmm_cpu_model", r.machine.cpu_model},
          {"vicvmm_nproc", std::to_string(r.machine.nproc)},
          {"vicvmm_kernel", r.machine.kernel},
          {"vicvmm_mem_total", r.machine.mem_total},
          {"vicvmm_load_start", fmt::format("{:.2f}", r.machine.load_start)},
          {"vicvmm_load_end", fmt::format("{:.2f}", r.machine.load_end)},
          {"vicvmm_wall_s", fmt::format("{:.1f}", r.wall_s)},
          {"vicvmm_time_note", "real_time = mean per iteration; cpu_time not measured (0); use the p50_us counter "
                               "or the _median aggregate"}};
}

}  // namespace

#ifdef VICBENCH_HAVE_GBENCH

bool json_uses_libbenchmark() { return true; }

Result<> write_json(const SuiteResults& r, const std::string& path, const std::string& executable) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return sys_err("bench: opening {}", path);
  for (const auto& [k, v] : context_of(r)) benchmark::AddCustomContext(k, v);
  static std::string exe;  // Context keeps the pointer
  exe = executable;
  benchmark::BenchmarkReporter::Context::executable_name = exe.c_str();
  benchmark::JSONReporter rep;
  rep.SetOutputStream(&out);
  rep.SetErrorStream(&std::cerr);
  benchmark::BenchmarkReporter::Context ctx;
  if (!rep.ReportContext(ctx)) return err("bench: the JSON reporter refused the context");
  std::vector<benchmark::BenchmarkReporter::Run> runs;
  int64_t family = 0;
  std::string last;
  for (const auto& row : rows_of(r)) {
    if (row.name != last) ++family;
    last = row.name;
    benchmark::BenchmarkReporter::Run run;
    run.run_name.function_name = row.name;
    run.family_index = family - 1;
    run.per_family_instance_index = 0;
    run.run_type = row.aggregate ? benchmark::BenchmarkReporter::Run::RT_Aggregate
                                 : benchmark::BenchmarkReporter::Run::RT_Iteration;
    run.aggregate_name = row.aggregate_name;
    run.aggregate_unit = benchmark::kTime;
    run.report_label = row.label;
    run.iterations = row.iterations;
    run.threads = 1;
    run.repetitions = 1;
    run.repetition_index = 0;
    run.time_unit = benchmark::kMicrosecond;
    run.real_accumulated_time = row.real_s_total;
    run.cpu_accumulated_time = 0;
    run.statistics = nullptr;
    for (const auto& c : row.counters) run.counters[c.name] = benchmark::Counter(c.value);
    runs.push_back(std::move(run));
  }
  rep.ReportRuns(runs);
  rep.Finalize();
  out.flush();
  if (!out) return sys_err("bench: writing {}", path);
  return {};
}

#else

bool json_uses_libbenchmark() { return false; }

// libbenchmark was not found at build time: the same schema, written here.
Result<> write_json(const SuiteResults& r, const std::string& path, const std::string& executable) {
  nlohmann::ordered_json j;
  auto& ctx = j["context"];
  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S%z", std::localtime(&now));
  ctx["date"] = date;
  ctx["executable"] = executable;
  ctx["num_cpus"] = r.machine.nproc;
  ctx["library_build_type"] = "none (written without libbenchmark)";
  for (const auto& [k, v] : context_of(r)) ctx[k] = v;
  auto& arr = j["benchmarks"] = nlohmann::ordered_json::array();
  int64_t family = 0;
  std::string last;
  for (const auto& row : rows_of(r)) {
    if (row.name != last) ++family;
    last = row.name;
    nlohmann::ordered_json b;
    b["name"] = row.aggregate ? row.name + "_" + row.aggregate_name : row.name;
    b["family_index"] = family - 1;
    b["per_family_instance_index"] = 0;
    b["run_name"] = row.name;
    b["run_type"] = row.aggregate ? "aggregate" : "iteration";
    b["repetitions"] = 1;
    if (!row.aggregate) b["repetition_index"] = 0;
    b["threads"] = 1;
    if (row.aggregate) {
      b["aggregate_name"] = row.aggregate_name;
      b["aggregate_unit"] = "time";
    }
    b["iterations"] = row.iterations;
    b["real_time"] = row.real_s_total * 1e6 / static_cast<double>(row.iterations);
    b["cpu_time"] = 0.0;
    b["time_unit"] = "us";
    for (const auto& c : row.counters) b[c.name] = c.value;
    b["label"] = row.label;
    arr.push_back(std::move(b));
  }
  std::ofstream out(path, std::ios::trunc);
  if (!out) return sys_err("bench: opening {}", path);
  out << j.dump(2) << "\n";
  if (!out) return sys_err("bench: writing {}", path);
  return {};
}

#endif

}  // namespace vicvmm::bench
