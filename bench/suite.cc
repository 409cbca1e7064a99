#include "bench/suite.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/guests/bench_guest.h"
#include "guest/abi/vicvmm_abi.h"
#include "vmm/host/nested_pvm.h"
#include "vmm/linux_boot.h"
#include "vmm/mapped_file.h"

extern char** environ;

namespace vicvmm::bench {

// The embedded guest (generated from bench_clone.S by guests/embed.py).
extern const uint8_t kBenchGuest[];
extern const size_t kBenchGuestSize;

static_assert(offsetof(vic_mailbox, seed) == BG_MB_SEED0, "bench_guest.h: seed offset");
static_assert(offsetof(vic_mailbox, generation) == BG_MB_GENERATION, "bench_guest.h: generation offset");
static_assert(BG_MAILBOX_GPA == VIC_MAILBOX_GPA && BG_DOORBELL_PORT == VIC_DOORBELL_PORT);
static_assert(BG_EV_READY == VIC_EV_READY && BG_EV_EXIT == VIC_EV_EXIT && BG_EV_TEMPLATE == VIC_EV_TEMPLATE);

namespace {

uint64_t now_ns() { return monotonic_ns(); }
double us_between(uint64_t from, uint64_t to) { return to > from ? static_cast<double>(to - from) / 1e3 : 0.0; }

constexpr std::chrono::seconds kCloneTimeout{60};

// Every timed sample starts after a short pause, so that work the previous
// sample left to the host kernel (a new VM's kvm-pit kthread starting, RCU
// and SRCU callbacks, a refilling pool) does not land in this one. Requests
// in a real deployment do not arrive back to back on one thread either.
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }

}  // namespace

std::span<const uint8_t> bench_guest_image() { return {kBenchGuest, kBenchGuestSize}; }

// ---- templates --------------------------------------------------------------------------------

Result<std::shared_ptr<const Template>> make_tiny_template(const Kvm& kvm) {
  MachineConfig cfg;
  cfg.mem_size = BG_MEM_SIZE;
  cfg.backing = Backing::SharedMemfd;  // Template::capture seals it
  cfg.console_fd = -1;
  cfg.timeout = std::chrono::seconds(20);
  VIC_ASSIGN(auto m, Machine::create(kvm, cfg));
  VIC_TRY(m->memory().write(BG_LOAD_GPA, bench_guest_image()));
  VIC_TRY(enter_long_mode(*m, BG_LOAD_GPA, 0));
  VIC_ASSIGN(StopInfo stop, m->run());
  if (stop.reason != StopReason::TemplateReady)
    return err("bench: tiny template guest stopped before its TEMPLATE doorbell: {}: {}", stop_reason_name(stop.reason),
               stop.detail);
  return Template::capture(kvm, std::move(m));
}

Result<ColdBoot> cold_boot_linux(const Kvm& kvm, const LinuxGuest& g, bool capture) {
  VIC_ASSIGN(MappedFile kernel, MappedFile::open(g.kernel, "kernel"));
  VIC_ASSIGN(MappedFile initrd, MappedFile::open(g.initrd, "initrd"));
  // Template::boot's path, step by step, so that READY can be timed.
  const uint64_t t0 = now_ns();
  MachineConfig cfg;
  cfg.mem_size = g.mem_size;
  cfg.backing = Backing::SharedMemfd;
  cfg.console_fd = -1;
  cfg.timeout = std::chrono::minutes(5);
  VIC_ASSIGN(auto m, Machine::create(kvm, cfg));
  LinuxBootSpec boot;
  boot.kernel = kernel.bytes();
  boot.initrd = initrd.bytes();
  boot.extra_cmdline = g.extra_cmdline;
  boot.agent.flags = VIC_MB_TEMPLATE | VIC_MB_QUIET;
  boot.agent.argv = {"/bin/true"};
  VIC_TRY(boot_linux(*m, boot));
  VIC_ASSIGN(StopInfo stop, m->run());
  if (stop.reason != StopReason::TemplateReady)
    return err("bench: Linux guest stopped before its agent parked: {}: {}", stop_reason_name(stop.reason),
               stop.detail);
  ColdBoot b;
  const auto& st = m->stats();
  b.to_first_run_us = us_between(t0, st.t_first_run.load());
  b.to_ready_us = us_between(t0, st.t_agent_ready.load());
  b.to_template_us = us_between(t0, st.t_stopped.load());
  if (b.to_ready_us <= 0) return err("bench: the Linux agent parked without ringing READY first");
  if (capture) {
    VIC_ASSIGN(b.tmpl, Template::capture(kvm, std::move(m)));
  }
  return b;
}

// ---- ReadyStopper ------------------------------------------------------------------------------

ReadyStopper::ReadyStopper() : thread_([this] { loop(); }) {}

ReadyStopper::~ReadyStopper() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ReadyStopper::prime() {
  std::unique_lock lock(mu_);
  primed_ = true;
  cv_.notify_all();
  cv_.wait(lock, [&] { return polling_ || quit_; });
}

void ReadyStopper::disarm() {
  {
    std::lock_guard lock(mu_);
    target_.store(nullptr);
    primed_ = false;
  }
  cv_.notify_all();
}

void ReadyStopper::loop() {
  std::unique_lock lock(mu_);
  while (!quit_) {
    if (!primed_) {
      polling_ = false;
      cv_.wait(lock, [&] { return primed_ || quit_; });
      continue;
    }
    if (!polling_) {
      polling_ = true;
      cv_.notify_all();  // prime() returns
      // No wake-ups in the first millisecond, where the first-instruction
      // latency is measured; READY comes later than that on Linux here.
      cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return !primed_ || quit_; });
      continue;
    }
    Machine* m = target_.load();
    if (m && m->stats().t_agent_ready.load() != 0) {
      m->request_stop({StopReason::Stopped, 0, "bench: stopped after READY"});
      target_.store(nullptr);
    }
    cv_.wait_for(lock, std::chrono::microseconds(200));
  }
}

// ---- single samples ----------------------------------------------------------------------------

AgentRequest bench_request(uint32_t clone_id, uint64_t dirty_pages) {
  AgentRequest req;
  req.argv = {"/bin/true"};
  req.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=linux"};  // vicvmm fork's defaults
  req.hostname = fmt::format("bench-{}", clone_id);
  req.clone_id = clone_id;
  // seed[0] is K for the tiny guest; the Linux agent mixes all four into its RNG.
  req.seed = {dirty_pages, 0x9e3779b97f4a7c15ull * (clone_id + 1), realtime_ns(), 0x2545f4914f6cdd1dull ^ clone_id};
  req.wallclock_ns = realtime_ns();
  return req;
}

Result<CloneSample> clone_once(CloneSource& src, const AgentRequest& req, Until until, ReadyStopper* stopper,
                               Graveyard& graveyard, std::unique_ptr<Clone>* keep) {
  if (until == Until::Ready && !stopper) return err("bench: clone_once(Until::Ready) needs a ReadyStopper");
  settle();
  if (until == Until::Ready) stopper->prime();
  const uint64_t t0 = now_ns();
  auto made = src.pool ? src.pool->acquire() : Clone::create(*src.kvm, src.tmpl, src.opts);
  if (!made) return tl::unexpected(made.error());
  std::unique_ptr<Clone> clone = std::move(*made);
  const uint64_t t_acquired = now_ns();

  Result<StopInfo> stop = err("not started");
  auto started = clone->start(req, t0);
  const uint64_t t_started = now_ns();
  if (started) {
    if (until == Until::Ready) stopper->arm(&clone->machine());
    stop = clone->run();
  }
  if (until == Until::Ready) stopper->disarm();
  const CloneTimes t = clone->times();
  if (keep) *keep = std::move(clone);
  else graveyard.add(std::move(clone));
  if (src.pool) VIC_TRY(src.pool->wait_ready(SIZE_MAX));  // refilled before the next sample

  if (!started) return tl::unexpected(started.error());
  if (!stop) return tl::unexpected(stop.error());
  CloneSample s;
  s.acquired_us = us_between(t0, t_acquired);
  s.started_us = us_between(t0, t_started);
  s.first_run_us = us_between(t0, t.first_run);
  s.ready_us = us_between(t0, t.personality);
  if (until == Until::Exit) {
    if (stop->reason != StopReason::CommandExited)
      return err("bench: clone stopped before its command exited: {}: {}", stop_reason_name(stop->reason),
                 stop->detail);
    s.exit_us = us_between(t0, t.stopped);
    s.status = stop->exit_status;
  } else if (s.ready_us <= 0) {
    return err("bench: clone stopped before READY: {}: {}", stop_reason_name(stop->reason), stop->detail);
  }
  if (s.first_run_us <= 0) return err("bench: clone never entered KVM_RUN");
  return s;
}

Result<FloorSample> floor_once(const Kvm& kvm, const Template& tiny, Graveyard& graveyard) {
  auto f = std::make_unique<FloorVm>();
  settle();
  const uint64_t t0 = now_ns();
  VIC_ASSIGN(f->mem, GuestMemory::create(tiny.mem_size(), Backing::PrivateFile, tiny.memory_fd()));
  VIC_ASSIGN(f->vm, Vm::create(kvm));
  uint32_t slot = 0;
  for (const auto& r : f->mem.regions()) VIC_TRY(f->vm.set_memory_region(slot++, r.gpa, r.size, r.host));
  VIC_ASSIGN(Vcpu v, f->vm.create_vcpu(kvm, 0));
  f->vcpu.emplace(std::move(v));
  VIC_TRY(f->vcpu->set_sregs(tiny.state().vcpu.sregs));
  kvm_regs regs{};
  regs.rip = BG_LOAD_GPA + BG_FLOOR_OFFSET;
  regs.rflags = 0x2;
  VIC_TRY(f->vcpu->set_regs(regs));
  const uint64_t t_run = now_ns();
  VIC_ASSIGN(bool ran, f->vcpu->run());
  const uint64_t t_exit = now_ns();
  const kvm_run* run = f->vcpu->run_state();
  const uint32_t reason = run->exit_reason;
  const uint16_t port = run->io.port;
  graveyard.add(std::move(f));
  if (!ran) return err("bench: floor VM's KVM_RUN was interrupted");
  if (reason != KVM_EXIT_IO || port != BG_FLOOR_PORT)
    return err("bench: floor VM's first exit was reason {} (port {:#x}), not the `out` to {:#x}", reason, port,
               BG_FLOOR_PORT);
  return FloorSample{us_between(t0, t_run), us_between(t0, t_exit)};
}

Result<std::array<double, kAnatomyStepCount>> anatomy_once(const Kvm& kvm, const Template& tiny,
                                                           Graveyard& graveyard) {
  std::array<double, kAnatomyStepCount> us{};
  auto f = std::make_unique<FloorVm>();
  settle();
  size_t step = 0;
  uint64_t t = now_ns();
  auto lap = [&] {
    uint64_t n = now_ns();
    us[step++] = us_between(t, n);
    t = now_ns();
  };
  const TemplateState& s = tiny.state();
  VIC_ASSIGN(f->mem, GuestMemory::create(tiny.mem_size(), Backing::PrivateFile, tiny.memory_fd()));
  lap();
  VIC_ASSIGN(f->vm, Vm::create(kvm));
  lap();
  VIC_TRY(f->vm.set_tss_and_identity_map(0xfffbd000));
  lap();
  uint32_t slot = 0;
  for (const auto& r : f->mem.regions())
    VIC_TRY(f->vm.set_memory_region(slot++, r.gpa, r.size, r.host, KVM_MEM_LOG_DIRTY_PAGES));
  lap();
  VIC_TRY(f->vm.create_irqchip());
  lap();
  VIC_TRY(f->vm.create_pit());
  lap();
  VIC_ASSIGN(Vcpu v, f->vm.create_vcpu(kvm, 0));
  f->vcpu.emplace(std::move(v));
  lap();
  VIC_TRY(f->vcpu->set_cpuid(s.cpuid));
  lap();
  VIC_TRY(restore_vm(f->vm, s.vm));
  lap();
  VIC_TRY(restore_vcpu(*f->vcpu, s.vcpu));
  lap();
  VIC_ASSIGN(Mailbox mb, build_mailbox([] {
               AgentRequest r = bench_request(1, 0);
               r.generation = 1;
               return r;
             }()));
  VIC_TRY(f->mem.write_obj(BG_MAILBOX_GPA, mb.page));
  lap();
  VIC_ASSIGN(bool ran, f->vcpu->run());
  lap();
  const kvm_run* run = f->vcpu->run_state();
  const uint32_t reason = run->exit_reason;
  const uint16_t port = run->io.port;
  graveyard.add(std::move(f));
  if (!ran || reason != KVM_EXIT_IO || port != BG_DOORBELL_PORT)
    return err("bench: anatomy VM's first exit was reason {} port {:#x}, not the READY doorbell", reason, port);
  return us;
}

// ---- restore from file in a new process ----------------------------------------------------------

int restore_child_main(const std::string& dir, const std::string& until) {
  const uint64_t t_main = now_ns();
  const bool to_ready = until == "ready";
  if (!to_ready && until != "exit") {
    fmt::print(stderr, "vicvmm-bench restore child: --until must be ready or exit, not '{}'\n", until);
    return 2;
  }
  std::optional<ReadyStopper> stopper;
  if (to_ready) {
    stopper.emplace();
    stopper->prime();
  }
  auto fail = [](const std::string& m) {
    fmt::print(stderr, "vicvmm-bench restore child: {}\n", m);
    return 1;
  };
  auto kvm = Kvm::open();
  if (!kvm) return fail(kvm.error().message);
  auto tmpl = Template::load(dir, detect_host_kind());
  if (!tmpl) return fail(tmpl.error().message);
  const uint64_t t_loaded = now_ns();
  CloneOptions opts;
  opts.timeout = kCloneTimeout;
  auto clone = Clone::create(*kvm, *tmpl, opts);
  if (!clone) return fail(clone.error().message);
  const uint64_t t_created = now_ns();
  if (auto r = (*clone)->start(bench_request(1, 0), t_main); !r) return fail(r.error().message);
  if (stopper) stopper->arm(&(*clone)->machine());
  auto stop = (*clone)->run();
  if (stopper) stopper->disarm();
  if (!stop) return fail(stop.error().message);
  const CloneTimes t = (*clone)->times();
  int status = stop->reason == StopReason::CommandExited ? stop->exit_status : -1;
  if (!to_ready && status < 0)
    return fail(fmt::format("clone stopped before its command exited: {}: {}", stop_reason_name(stop->reason),
                            stop->detail));
  fmt::print("vicbench-restore {} {} {} {} {} {} {}\n", t_main, t_loaded, t_created, t.first_run, t.personality,
             to_ready ? 0 : t.stopped, status);
  std::fflush(stdout);
  return 0;
}

Result<RestoreSample> restore_in_child(const std::vector<std::string>& argv) {
  if (argv.empty()) return err("bench: no restore child command");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return sys_err("bench: pipe");
  UniqueFd rd(fds[0]), wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const uint64_t t0 = now_ns();
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    return sys_err("bench: spawning {}", argv[0]);
  }
  wr.reset();
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = read(rd.get(), buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  const uint64_t t_reaped = now_ns();
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
    return err("bench: restore child {} failed (wait status {:#x}); its output: {}", argv[0], wstatus, out);
  uint64_t t_main = 0, t_loaded = 0, t_created = 0, t_first = 0, t_ready = 0, t_stopped = 0;
  int status = 0;
  auto pos = out.find("vicbench-restore ");
  if (pos == std::string::npos ||
      std::sscanf(out.c_str() + pos, "vicbench-restore %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                                     " %" SCNu64 " %d",
                  &t_main, &t_loaded, &t_created, &t_first, &t_ready, &t_stopped, &status) != 7)
    return err("bench: restore child printed no timing line: {}", out);
  (void)t_created;
  RestoreSample s;
  s.to_main_us = us_between(t0, t_main);
  s.to_loaded_us = us_between(t0, t_loaded);
  s.to_first_run_us = us_between(t0, t_first);
  s.to_ready_us = us_between(t0, t_ready);
  s.to_exit_us = us_between(t0, t_stopped);
  s.to_reaped_us = us_between(t0, t_reaped);
  return s;
}

// ---- memory ----------------------------------------------------------------------------------------

MemStat mem_stat() {
  MemStat m;
  auto parse = [](const char* path, auto&& on_kv) {
    std::ifstream in(path);
    std::string key;
    uint64_t kb = 0;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      if (!(ls >> key >> kb)) continue;
      on_kv(key, kb * 1024);
    }
  };
  parse("/proc/self/smaps_rollup", [&](const std::string& k, uint64_t v) {
    if (k == "Private_Dirty:") m.private_dirty = v;
    else if (k == "Rss:") m.rss = v;
  });
  parse("/proc/meminfo", [&](const std::string& k, uint64_t v) {
    if (k == "SUnreclaim:") m.slab_unreclaimable = v;
    else if (k == "MemFree:") m.mem_free = v;
    else if (k == "SReclaimable:") m.slab_reclaimable = v;
    else if (k == "VmallocUsed:") m.vmalloc_used = v;
    else if (k == "KernelStack:") m.kernel_stack = v;
    else if (k == "PageTables:") m.page_tables = v;
    else if (k == "SecPageTables:") m.sec_page_tables = v;
    else if (k == "Percpu:") m.percpu = v;
  });
  return m;
}

// ---- machine -----------------------------------------------------------------------------------------

MachineInfo machine_info() {
  MachineInfo mi;
  mi.nproc = static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN));
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      mi.cpu_model = c == std::string::npos ? line : line.substr(c + 2);
      break;
    }
  }
  mi.host_kind = host_kind_name(detect_host_kind());
  utsname u{};
  if (uname(&u) == 0) mi.kernel = fmt::format("{} {}", u.sysname, u.release);
  std::ifstream mem("/proc/meminfo");
  for (std::string line; std::getline(mem, line);) {
    if (line.rfind("MemTotal:", 0) == 0) {
      uint64_t kb = 0;
      std::sscanf(line.c_str(), "MemTotal: %" SCNu64, &kb);
      mi.mem_total = fmt::format("{:.1f} GiB", static_cast<double>(kb) / (1 << 20));
    }
  }
  double la[1] = {0};
  if (getloadavg(la, 1) == 1) mi.load_start = la[0];
  return mi;
}

const Dist* SuiteResults::dist(const std::string& name) const {
  for (const auto& d : dists)
    if (d.name == name) return &d;
  return nullptr;
}

std::optional<double> SuiteResults::scalar(const std::string& name) const {
  for (const auto& s : scalars)
    if (s.name == name) return s.value;
  return std::nullopt;
}

}  // namespace vicvmm::bench
