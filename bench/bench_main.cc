// vicvmm-bench: Google Benchmark over the suite's measurement functions
// (bench/suite.h). `vicvmm bench` runs the standard suite with its summary
// and SVG; this binary is for focused, filterable runs with Google
// Benchmark's own flags and reporters, e.g.
//
//   vicvmm-bench --benchmark_filter='clone/tiny' --benchmark_format=json
//
// Latencies are per-iteration manual times (UseManualTime) in microseconds;
// percentiles are counters (p50_us, p90_us, p99_us). The Linux benchmarks
// boot the default guest once on first use (~20 s here), or load the saved
// template named by --vicvmm_template=NAME. compare/* benchmarks alternate
// their two sides in one run and report the ratio of medians.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "bench/suite.h"
#include "clone/locations.h"

using namespace vicvmm;
using namespace vicvmm::bench;

namespace {

std::string g_template_name;
std::string g_self;

struct Env {
  std::optional<Kvm> kvm;
  std::shared_ptr<const Template> tiny, linux_tmpl;
  std::string error, linux_error;
  ReadyStopper stopper;
  Graveyard graveyard;
  std::string workdir;
  uint32_t next_id = 1;

  ~Env() {
    graveyard.flush();
    if (!workdir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(workdir, ec);
    }
  }
};

Env& env() {
  static Env e;
  static bool init = false;
  if (!init) {
    init = true;
    auto k = Kvm::open();
    if (!k) {
      e.error = k.error().message;
      return e;
    }
    e.kvm.emplace(std::move(*k));
    auto t = make_tiny_template(*e.kvm);
    if (!t) e.error = t.error().message;
    else e.tiny = *t;
    std::string dir = (std::filesystem::temp_directory_path() / "vicvmm-bench-XXXXXX").string();
    if (mkdtemp(dir.data())) e.workdir = dir;
  }
  return e;
}

bool need_tiny(benchmark::State& st) {
  Env& e = env();
  if (!e.tiny) {
    st.SkipWithError(("tiny template: " + e.error).c_str());
    return false;
  }
  return true;
}

bool need_linux(benchmark::State& st) {
  Env& e = env();
  if (!need_tiny(st)) return false;
  if (!e.linux_tmpl && e.linux_error.empty()) {
    if (!g_template_name.empty()) {
      auto path = template_path(g_template_name);
      if (!path) {
        e.linux_error = path.error().message;
      } else if (auto t = Template::load(*path, detect_host_kind()); t) {
        e.linux_tmpl = *t;
      } else {
        e.linux_error = t.error().message;
      }
    } else {
      fmt::print(stderr, "vicvmm-bench: cold-booting the Linux template (~10-60 s on a nested PVM host)...\n");
      LinuxGuest g{default_kernel(), default_initrd()};
      auto b = cold_boot_linux(*e.kvm, g, true);
      if (b) e.linux_tmpl = b->tmpl;
      else e.linux_error = b.error().message;
    }
  }
  if (!e.linux_tmpl) {
    st.SkipWithError(("Linux template: " + e.linux_error).c_str());
    return false;
  }
  return true;
}

void set_percentiles(benchmark::State& st, const std::string& prefix, const std::vector<double>& us) {
  Percentiles p = percentiles(us);
  st.counters[prefix + "p50_us"] = p.p50;
  st.counters[prefix + "p90_us"] = p.p90;
  st.counters[prefix + "p99_us"] = p.p99;
}

CloneSource make_source(std::shared_ptr<const Template> t, ClonePool* pool) {
  CloneSource s;
  s.kvm = &*env().kvm;
  s.tmpl = std::move(t);
  s.pool = pool;
  s.opts.timeout = std::chrono::seconds(60);
  return s;
}

std::unique_ptr<ClonePool> make_pool(std::shared_ptr<const Template> t, size_t target) {
  PoolOptions po;
  po.target = target;
  po.clone.timeout = std::chrono::seconds(60);
  auto pool = std::make_unique<ClonePool>(*env().kvm, std::move(t), po);
  (void)pool->wait_ready(target);
  return pool;
}

#define BENCH_TRY(st, expr)                              \
  ({                                                     \
    auto r_ = (expr);                                    \
    if (!r_) {                                           \
      (st).SkipWithError(r_.error().message.c_str());    \
      return;                                            \
    }                                                    \
    std::move(*r_);                                      \
  })

// ---- clone latency ----------------------------------------------------------------------------

void BM_Clone(benchmark::State& st, bool linux_guest, bool pooled) {
  if (!(linux_guest ? need_linux(st) : need_tiny(st))) return;
  Env& e = env();
  auto tmpl = linux_guest ? e.linux_tmpl : e.tiny;
  std::unique_ptr<ClonePool> pool = pooled ? make_pool(tmpl, 8) : nullptr;
  CloneSource src = make_source(tmpl, pool.get());
  std::vector<double> first, ready;
  for (auto _ : st) {
    CloneSample s = BENCH_TRY(st, clone_once(src, bench_request(e.next_id++), linux_guest ? Until::Ready : Until::Exit,
                                             &e.stopper, e.graveyard));
    st.SetIterationTime(s.first_run_us / 1e6);
    first.push_back(s.first_run_us);
    ready.push_back(s.ready_us);
    e.graveyard.maybe_flush();
  }
  e.graveyard.flush();
  set_percentiles(st, "", first);
  set_percentiles(st, "ready_", ready);
}

void BM_LinuxTrue(benchmark::State& st) {
  if (!need_linux(st)) return;
  Env& e = env();
  auto pool = make_pool(e.linux_tmpl, 4);
  CloneSource src = make_source(e.linux_tmpl, pool.get());
  std::vector<double> exit;
  for (auto _ : st) {
    CloneSample s = BENCH_TRY(st, clone_once(src, bench_request(e.next_id++), Until::Exit, nullptr, e.graveyard));
    st.SetIterationTime(s.exit_us / 1e6);
    exit.push_back(s.exit_us);
  }
  e.graveyard.flush();
  set_percentiles(st, "", exit);
}

void BM_Floor(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  std::vector<double> run, exit;
  for (auto _ : st) {
    FloorSample s = BENCH_TRY(st, floor_once(*e.kvm, *e.tiny, e.graveyard));
    st.SetIterationTime(s.to_exit_us / 1e6);
    run.push_back(s.to_run_us);
    exit.push_back(s.to_exit_us);
    e.graveyard.maybe_flush();
  }
  e.graveyard.flush();
  set_percentiles(st, "", exit);
  set_percentiles(st, "to_run_", run);
}

// Step-by-step no-pool clone (suite.h: kAnatomySteps); counters stepNN_p50_us.
void BM_Anatomy(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  std::vector<std::vector<double>> steps(kAnatomyStepCount);
  for (auto _ : st) {
    auto s = BENCH_TRY(st, anatomy_once(*e.kvm, *e.tiny, e.graveyard));
    double total = 0;
    for (size_t i = 0; i < kAnatomyStepCount; ++i) {
      steps[i].push_back(s[i]);
      total += s[i];
    }
    st.SetIterationTime(total / 1e6);
    e.graveyard.maybe_flush();
  }
  e.graveyard.flush();
  for (size_t i = 0; i < kAnatomyStepCount; ++i)
    st.counters[fmt::format("step{:02}_p50_us", i + 1)] = percentiles(steps[i]).p50;
  st.SetLabel("steps: see kAnatomySteps in bench/suite.h");
}

// ---- reset ------------------------------------------------------------------------------------

void BM_Reset(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  const uint64_t k = static_cast<uint64_t>(st.range(0));
  auto clone = BENCH_TRY(st, Clone::create(*e.kvm, e.tiny));
  std::vector<double> reset, restore;
  uint64_t pages = 0;
  bool first = true;
  for (auto _ : st) {
    uint64_t t0 = monotonic_ns();
    if (auto r = clone->start(bench_request(e.next_id++, k)); !r) return st.SkipWithError(r.error().message.c_str());
    uint64_t t1 = monotonic_ns();
    auto stop = clone->run();
    if (!stop || stop->reason != StopReason::CommandExited) return st.SkipWithError("clone did not exit");
    if (first) {  // count once; harvesting before every reset would flatter it
      pages = clone->dirty_pages().value_or(0);
      first = false;
    }
    uint64_t t2 = monotonic_ns();
    if (auto r = clone->reset(); !r) return st.SkipWithError(r.error().message.c_str());
    uint64_t t3 = monotonic_ns();
    st.SetIterationTime((t3 - t2) / 1e9);
    reset.push_back((t3 - t2) / 1e3);
    restore.push_back((t1 - t0) / 1e3);
  }
  st.counters["dirty_pages"] = static_cast<double>(pages);
  set_percentiles(st, "", reset);
  set_percentiles(st, "restore_", restore);
}

// ---- throughput and density -------------------------------------------------------------------

void BM_Create1000(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  const size_t n = static_cast<size_t>(st.range(0));
  for (auto _ : st) {
    e.graveyard.flush();
    MemStat base = mem_stat();
    std::vector<std::unique_ptr<Clone>> live;
    uint64_t t0 = monotonic_ns();
    for (size_t i = 0; i < n; ++i) live.push_back(BENCH_TRY(st, Clone::create(*e.kvm, e.tiny)));
    double secs = (monotonic_ns() - t0) / 1e9;
    st.SetIterationTime(secs);
    MemStat m = mem_stat();
    st.counters["clones_per_s"] = n / secs;
    st.counters["shell_user_kib"] = (double(m.private_dirty) - double(base.private_dirty)) / 1024 / n;
    st.counters["shell_kernel_kib"] = (double(m.kernel()) - double(base.kernel())) / 1024 / n;
    for (auto& c : live) {
      if (auto r = c->start(bench_request(e.next_id++)); !r) return st.SkipWithError(r.error().message.c_str());
      if (auto r = c->run(); !r) return st.SkipWithError(r.error().message.c_str());
    }
    m = mem_stat();
    st.counters["idle_user_kib"] = (double(m.private_dirty) - double(base.private_dirty)) / 1024 / n;
    st.counters["idle_kernel_kib"] = (double(m.kernel()) - double(base.kernel())) / 1024 / n;
  }
}

// ---- snapshots and restore from file ----------------------------------------------------------

void BM_SnapshotWrite(benchmark::State& st, bool linux_guest) {
  if (!(linux_guest ? need_linux(st) : need_tiny(st))) return;
  Env& e = env();
  auto tmpl = linux_guest ? e.linux_tmpl : e.tiny;
  std::string dir = e.workdir + (linux_guest ? "/linux" : "/tiny");
  for (auto _ : st) {
    uint64_t t0 = monotonic_ns();
    if (auto r = tmpl->save(dir, true); !r) return st.SkipWithError(r.error().message.c_str());
    st.SetIterationTime((monotonic_ns() - t0) / 1e9);
  }
}

std::vector<std::string> child_argv(const std::string& dir, const char* until) {
  return {g_self, "--vicvmm_restore_child=" + dir, std::string("--vicvmm_until=") + until};
}

void BM_RestoreFile(benchmark::State& st, bool linux_guest) {
  if (!(linux_guest ? need_linux(st) : need_tiny(st))) return;
  Env& e = env();
  std::string dir = e.workdir + (linux_guest ? "/linux-r" : "/tiny-r");
  if (auto r = (linux_guest ? e.linux_tmpl : e.tiny)->save(dir, true); !r)
    return st.SkipWithError(r.error().message.c_str());
  auto argv = child_argv(dir, linux_guest ? "ready" : "exit");
  std::vector<double> total, first, loaded;
  for (auto _ : st) {
    RestoreSample s = BENCH_TRY(st, restore_in_child(argv));
    double t = linux_guest ? s.to_ready_us : s.to_exit_us;
    st.SetIterationTime(t / 1e6);
    total.push_back(t);
    first.push_back(s.to_first_run_us);
    loaded.push_back(s.to_loaded_us);
  }
  set_percentiles(st, "", total);
  set_percentiles(st, "first_instruction_", first);
  set_percentiles(st, "loaded_", loaded);
}

void BM_ColdBoot(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  LinuxGuest g{default_kernel(), default_initrd()};
  for (auto _ : st) {
    ColdBoot b = BENCH_TRY(st, cold_boot_linux(*e.kvm, g, false));
    st.SetIterationTime(b.to_ready_us / 1e6);
    st.counters["to_first_run_us"] = b.to_first_run_us;
  }
}

// ---- side by side (A B A B ...) ---------------------------------------------------------------

// Alternates two samplers `pairs` times, reports both medians and their ratio.
template <class A, class B>
void compare(benchmark::State& st, size_t pairs, A&& a, B&& b) {
  for (auto _ : st) {
    std::vector<double> va, vb;
    uint64_t t0 = monotonic_ns();
    for (size_t i = 0; i < pairs; ++i) {
      for (size_t k = 0; k < 2; ++k) {
        auto r = (i + k) % 2 == 0 ? a() : b();
        if (!r) return st.SkipWithError(r.error().message.c_str());
        ((i + k) % 2 == 0 ? va : vb).push_back(*r);
      }
      env().graveyard.maybe_flush();
    }
    env().graveyard.flush();
    st.SetIterationTime((monotonic_ns() - t0) / 1e9);
    double ma = percentiles(va).p50, mb = percentiles(vb).p50;
    st.counters["a_p50_us"] = ma;
    st.counters["b_p50_us"] = mb;
    st.counters["ratio_a_over_b"] = mb > 0 ? ma / mb : 0;
    st.counters["pairs"] = static_cast<double>(pairs);
  }
}

void BM_ComparePool(benchmark::State& st, bool linux_guest) {
  if (!(linux_guest ? need_linux(st) : need_tiny(st))) return;
  Env& e = env();
  auto tmpl = linux_guest ? e.linux_tmpl : e.tiny;
  auto pool = make_pool(tmpl, 8);
  CloneSource with = make_source(tmpl, pool.get()), without = make_source(tmpl, nullptr);
  Until until = linux_guest ? Until::Ready : Until::Exit;
  auto sample = [&](CloneSource& src) -> Result<double> {
    VIC_ASSIGN(CloneSample s, clone_once(src, bench_request(e.next_id++), until, &e.stopper, e.graveyard));
    return s.first_run_us;
  };
  compare(st, linux_guest ? 30 : 150, [&] { return sample(without); }, [&] { return sample(with); });
}

void BM_CompareFloor(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  CloneSource without = make_source(e.tiny, nullptr);
  compare(
      st, 150,
      [&]() -> Result<double> {
        VIC_ASSIGN(CloneSample s, clone_once(without, bench_request(e.next_id++), Until::Exit, nullptr, e.graveyard));
        return s.ready_us;
      },
      [&]() -> Result<double> {
        VIC_ASSIGN(FloorSample s, floor_once(*e.kvm, *e.tiny, e.graveyard));
        return s.to_exit_us;
      });
}

void BM_CompareFileRestore(benchmark::State& st) {
  if (!need_tiny(st)) return;
  Env& e = env();
  std::string dir = e.workdir + "/tiny-c";
  if (auto r = e.tiny->save(dir, true); !r) return st.SkipWithError(r.error().message.c_str());
  auto loaded = Template::load(dir, detect_host_kind());
  if (!loaded) return st.SkipWithError(loaded.error().message.c_str());
  CloneSource in_proc = make_source(*loaded, nullptr);
  auto argv = child_argv(dir, "exit");
  compare(
      st, 15,
      [&]() -> Result<double> {
        VIC_ASSIGN(RestoreSample s, restore_in_child(argv));
        return s.to_exit_us;
      },
      [&]() -> Result<double> {
        VIC_ASSIGN(CloneSample s, clone_once(in_proc, bench_request(e.next_id++), Until::Exit, nullptr, e.graveyard));
        return s.exit_us;
      });
}

void register_all() {
  auto lat = [](benchmark::internal::Benchmark* b, int iters) {
    b->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(iters);
  };
  lat(benchmark::RegisterBenchmark("clone/tiny/pool", BM_Clone, false, true), 300);
  lat(benchmark::RegisterBenchmark("clone/tiny/no_pool", BM_Clone, false, false), 300);
  lat(benchmark::RegisterBenchmark("floor/raw_kvm", BM_Floor), 300);
  lat(benchmark::RegisterBenchmark("anatomy/no_pool_clone", BM_Anatomy), 100);
  lat(benchmark::RegisterBenchmark("reset", BM_Reset)->Arg(0)->Arg(16)->Arg(256)->Arg(4096), 40);
  lat(benchmark::RegisterBenchmark("throughput/create", BM_Create1000)->Arg(1000), 1);
  lat(benchmark::RegisterBenchmark("snapshot/write/tiny", BM_SnapshotWrite, false), 5);
  lat(benchmark::RegisterBenchmark("restore/file/tiny", BM_RestoreFile, false), 20);
  lat(benchmark::RegisterBenchmark("compare/no_pool_vs_pool/tiny", BM_ComparePool, false), 1);
  lat(benchmark::RegisterBenchmark("compare/clone_vs_floor/tiny", BM_CompareFloor), 1);
  lat(benchmark::RegisterBenchmark("compare/file_restore_vs_in_process/tiny", BM_CompareFileRestore), 1);
  lat(benchmark::RegisterBenchmark("clone/linux/pool", BM_Clone, true, true), 40);
  lat(benchmark::RegisterBenchmark("clone/linux/no_pool", BM_Clone, true, false), 40);
  lat(benchmark::RegisterBenchmark("clone/linux/true_exit", BM_LinuxTrue), 5);
  lat(benchmark::RegisterBenchmark("compare/no_pool_vs_pool/linux", BM_ComparePool, true), 1);
  lat(benchmark::RegisterBenchmark("snapshot/write/linux", BM_SnapshotWrite, true), 3);
  lat(benchmark::RegisterBenchmark("restore/file/linux", BM_RestoreFile, true), 10);
  lat(benchmark::RegisterBenchmark("boot/linux/cold_to_ready", BM_ColdBoot), 1);
}

}  // namespace

int main(int argc, char** argv) {
  // Hidden flags: the restore child, and which saved template to use.
  std::string child_dir, until = "exit";
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--vicvmm_restore_child=", 0) == 0) child_dir = a.substr(std::strlen("--vicvmm_restore_child="));
    else if (a.rfind("--vicvmm_until=", 0) == 0) until = a.substr(std::strlen("--vicvmm_until="));
    else if (a.rfind("--vicvmm_template=", 0) == 0) g_template_name = a.substr(std::strlen("--vicvmm_template="));
    else rest.push_back(argv[i]);
  }
  if (!child_dir.empty()) return restore_child_main(child_dir, until);
  std::error_code ec;
  g_self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) g_self = argv[0];

  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
