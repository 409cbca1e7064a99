// The vicvmm benchmark suite: each measurement as a function that returns
// samples, plus run_suite(), the standard sequence behind `vicvmm bench`.
// bench_main.cc (the Google Benchmark binary) registers benchmarks over the
// same functions.
//
// Conventions: latencies are microseconds on CLOCK_MONOTONIC; every
// comparison is measured in one run with its sides alternated (A B A B ...);
// VMs are destroyed between samples, off the timed path (Graveyard); each
// timed sample starts after a 2 ms pause (the previous sample's deferred
// host-kernel work stays out of it).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "clone/clone.h"
#include "clone/latency.h"
#include "clone/pool.h"
#include "clone/template.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"

namespace vicvmm::bench {

// ---- guests and templates -----------------------------------------------------------------

// The tiny template guest (bench/guests/bench_clone.S), embedded at build time.
std::span<const uint8_t> bench_guest_image();

// Boots bench_clone.S to its TEMPLATE doorbell (a few ms) and captures it.
Result<std::shared_ptr<const Template>> make_tiny_template(const Kvm& kvm);

struct LinuxGuest {
  std::string kernel, initrd;     // paths
  uint64_t mem_size = 128ull << 20;
  std::string extra_cmdline;
};

struct ColdBoot {
  std::shared_ptr<const Template> tmpl;  // set when captured
  double to_first_run_us = 0;  // Machine::create .. first KVM_RUN (kernel loaded)
  double to_ready_us = 0;      // Machine::create .. agent READY (init up: the cold-boot figure)
  double to_template_us = 0;   // .. agent parked (TEMPLATE doorbell)
};

// Cold boot of the Linux guest in template mode: exactly Template::boot's
// path, timed (the agent rings READY, then parks). Captures the template
// when `capture`; otherwise the machine is thrown away.
Result<ColdBoot> cold_boot_linux(const Kvm& kvm, const LinuxGuest& guest, bool capture);

// ---- destroying VMs off the timed path ----------------------------------------------------

// Destroys every object in `v` on up to `threads` threads. Closing a VM
// sleeps in KVM (SRCU grace periods: ~15 ms per VM measured on this host
// under load), so destruction is sleep-bound and parallelises well.
template <class T>
void destroy_parallel(std::vector<std::unique_ptr<T>>& v, unsigned threads = 16) {
  if (v.size() < 4 || threads < 2) {
    v.clear();
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  for (size_t i = 0; i < std::min<size_t>(threads, v.size()); ++i)
    ts.emplace_back([&] {
      for (size_t k; (k = next.fetch_add(1)) < v.size();) v[k].reset();
    });
  for (auto& t : ts) t.join();
  v.clear();
}

// A bare VM as the raw-KVM floor builds it.
struct FloorVm {
  GuestMemory mem;
  Vm vm;
  std::optional<Vcpu> vcpu;
};

// Keeps finished clones and floor VMs until flush(), which destroys them on
// the calling thread between samples (never inside a timed region, never
// concurrently with one). HOST.md: close(vm) costs ~0.3-0.4 ms, ~14 ms when
// the VM is younger than ~15 ms, so the suite flushes in batches.
class Graveyard {
 public:
  void add(std::unique_ptr<Clone> c) { clones_.push_back(std::move(c)); }
  void add(std::unique_ptr<FloorVm> f) { floors_.push_back(std::move(f)); }
  size_t size() const { return clones_.size() + floors_.size(); }
  void flush() {
    destroy_parallel(clones_);
    destroy_parallel(floors_);
  }
  // Flushes once `batch` VMs are waiting.
  void maybe_flush(size_t batch = 48) {
    if (size() >= batch) flush();
  }

 private:
  std::vector<std::unique_ptr<Clone>> clones_;
  std::vector<std::unique_ptr<FloorVm>> floors_;
};

// ---- single samples ------------------------------------------------------------------------

// Stops a running machine once its agent rang READY (personality read), for
// Linux clones whose command would otherwise take 1-2 s of emulated kernel
// work. One polling thread (every 200 us) for the whole suite; the READY
// timestamp itself is taken by the vCPU thread, so polling adds no error.
//
// Usage: prime() BEFORE the timed region (it wakes the thread and waits
// until it polls), arm() once the machine exists (an atomic store: waking a
// thread there would let it preempt the requester on a 2-vCPU host and
// inflate the measured latency), disarm() after run() returned.
class ReadyStopper {
 public:
  ReadyStopper();
  ~ReadyStopper();
  ReadyStopper(const ReadyStopper&) = delete;
  ReadyStopper& operator=(const ReadyStopper&) = delete;
  void prime();
  void arm(Machine* m) { target_.store(m); }
  void disarm();

 private:
  void loop();
  std::mutex mu_;  // held while the thread looks at target_, and by disarm()
  std::condition_variable cv_;
  std::atomic<Machine*> target_{nullptr};
  bool primed_ = false, polling_ = false, quit_ = false;
  std::thread thread_;
};

enum class Until { Ready, Exit };

struct CloneSample {
  double acquired_us = 0;   // request .. shell in hand (pool acquire or Clone::create)
  double started_us = 0;    // request .. Clone::start returned (personality written)
  double first_run_us = 0;  // request .. just before the first KVM_RUN
  double ready_us = 0;      // request .. READY doorbell (personality read)
  double exit_us = 0;       // request .. EXIT doorbell (command exited); 0 with Until::Ready
  int status = -1;
};

// Where clones come from: a pool (acquire) or on demand (Clone::create).
struct CloneSource {
  const Kvm* kvm = nullptr;
  std::shared_ptr<const Template> tmpl;
  ClonePool* pool = nullptr;  // null: no pool
  CloneOptions opts;
};

// One clone, timed from the request: acquire or create, start (restore state,
// write the personality), run until READY or EXIT. The finished clone goes
// to `keep` if given (density), else to the graveyard. With a pool, waits
// for the pool to be full again afterwards, so its refill never overlaps the
// next sample.
Result<CloneSample> clone_once(CloneSource& src, const AgentRequest& req, Until until, ReadyStopper* stopper,
                               Graveyard& graveyard, std::unique_ptr<Clone>* keep = nullptr);

// The personality the suite gives clones: /bin/true for the Linux agent;
// seed[0] = K pages for the tiny guest to dirty.
AgentRequest bench_request(uint32_t clone_id, uint64_t dirty_pages = 0);

struct FloorSample {
  double to_run_us = 0;   // start .. just before KVM_RUN
  double to_exit_us = 0;  // start .. KVM_RUN returned with the guest's first exit
};

// The raw KVM floor: MAP_PRIVATE of the template memory, KVM_CREATE_VM,
// SET_USER_MEMORY_REGION over it, KVM_CREATE_VCPU + mmap(kvm_run), SET_SREGS
// (the template's long-mode segments/CR3: the only state it gets) and
// SET_REGS (RIP at the floor's `out`), KVM_RUN to that first exit. No TSS,
// no irqchip, no PIT, no CPUID, no state restore, no devices.
Result<FloorSample> floor_once(const Kvm& kvm, const Template& tiny, Graveyard& graveyard);

// Where a no-pool clone's time goes: the steps Clone::create + start + run
// perform, done one by one with raw KVM calls over the tiny template and
// timed separately (us each, in order): mmap, CREATE_VM, TSS + identity map,
// memslot (dirty log), IRQCHIP, PIT2, VCPU + mmap, SET_CPUID2, VM state
// restore, vCPU state restore, mailbox write, KVM_RUN to the READY exit.
inline constexpr const char* kAnatomySteps[] = {
    "mmap template memory (MAP_PRIVATE)", "KVM_CREATE_VM", "KVM_SET_TSS_ADDR + IDENTITY_MAP_ADDR",
    "KVM_SET_USER_MEMORY_REGION (dirty log)", "KVM_CREATE_IRQCHIP", "KVM_CREATE_PIT2 (starts a kvm-pit kthread)",
    "KVM_CREATE_VCPU + mmap(kvm_run)", "KVM_SET_CPUID2", "restore VM state (PIC x2, IOAPIC, PIT, clock)",
    "restore vCPU state (regs ... MSRs, events)", "write the mailbox (copy-on-write fault)",
    "first KVM_RUN to the READY exit"};
inline constexpr size_t kAnatomyStepCount = sizeof(kAnatomySteps) / sizeof(kAnatomySteps[0]);
Result<std::array<double, kAnatomyStepCount>> anatomy_once(const Kvm& kvm, const Template& tiny, Graveyard& graveyard);

// Reset latency for a clone that dirtied K pages (tiny guest).
struct ResetSample {
  uint64_t dirty_pages = 0;  // pages written since start (dirty log + mailbox)
  double reset_us = 0;       // Clone::reset(): harvest dirty log, MADV_DONTNEED the runs
  double restore_us = 0;     // then Clone::start(): template state + personality again
};

// ---- restore from file in a fresh process (the way Firecracker restores) -------------------

struct RestoreSample {
  double to_main_us = 0;       // spawn .. child's main() (exec + dynamic loading)
  double to_loaded_us = 0;     // .. snapshot read and verified (Template::load)
  double to_first_run_us = 0;  // .. clone's first KVM_RUN
  double to_ready_us = 0;      // .. READY
  double to_exit_us = 0;       // .. EXIT (0 when stopped at READY)
  double to_reaped_us = 0;     // .. child reaped (includes its VM teardown)
};

// Spawns `argv` (this executable plus the front end's hidden child flags,
// see restore_child_main), times it from just before posix_spawn.
Result<RestoreSample> restore_in_child(const std::vector<std::string>& argv);

// Child side: loads snapshot `dir`, runs one clone until "ready" or "exit",
// prints one line of CLOCK_MONOTONIC stamps on stdout. Returns the exit code.
int restore_child_main(const std::string& dir, const std::string& until);

// ---- host memory ---------------------------------------------------------------------------

// Userspace: this process's /proc/self/smaps_rollup. Kernel: /proc/meminfo
// (system-wide: other processes add noise). All in bytes.
struct MemStat {
  uint64_t private_dirty = 0, rss = 0;
  uint64_t mem_free = 0;  // MemFree, a system-wide cross-check (other processes move it too)
  uint64_t slab_unreclaimable = 0, slab_reclaimable = 0, vmalloc_used = 0, kernel_stack = 0, page_tables = 0,
           sec_page_tables = 0, percpu = 0;
  // What the suite counts as KVM's kernel memory: SUnreclaim + VmallocUsed +
  // KernelStack + PageTables + SecPageTables + Percpu (SReclaimable, the
  // dentry/inode caches, is recorded but left out).
  uint64_t kernel() const {
    return slab_unreclaimable + vmalloc_used + kernel_stack + page_tables + sec_page_tables + percpu;
  }
};
MemStat mem_stat();

// ---- the standard suite --------------------------------------------------------------------

struct SuiteOptions {
  bool quick = false;
  LinuxGuest linux_guest;
  std::string template_dir;  // non-empty: load this saved template instead of booting one
  std::string template_name;
  // argv prefix that makes this executable run restore_child_main(DIR, UNTIL):
  // the suite appends DIR and UNTIL.
  std::vector<std::string> child_argv;
  std::string command_line;  // how the suite was invoked (reports)
  std::function<void(const std::string&)> progress;  // stderr lines; may be empty
};

struct Dist {            // a latency distribution (us)
  std::string name;      // benchmark name, e.g. "clone/tiny/pool/first_instruction"
  std::string label;     // for people
  std::vector<double> us;
  bool detail = false;   // a breakdown part: JSON only, summarised in the table's breakdown section
  Percentiles p() const { return percentiles(us); }
};

struct Scalar {
  std::string name, label, unit;
  double value = 0;
};

struct Ratio {
  std::string name, label;  // label: "A / B"
  double value = 0;         // median(A) / median(B)
  std::string a, b;         // Dist names
  size_t pairs = 0;         // alternated pairs behind it
};

struct TargetCheck {
  std::string target, measured;
  bool met = false;
  std::string bound;  // what bounds a miss (empty when met)
};

struct DensityPoint {
  double clones = 0;
  double user_mib = 0;    // Private_Dirty delta
  double kernel_mib = 0;  // kernel() delta
};

struct DensityCurve {
  std::string name, label;
  std::vector<DensityPoint> points;
};

struct MachineInfo {
  unsigned nproc = 0;
  std::string cpu_model, host_kind, kernel, mem_total;
  double load_start = 0, load_end = 0;  // 1-minute load average
};

struct SuiteResults {
  std::string mode;  // "quick" or "full"
  std::string command_line;
  MachineInfo machine;
  std::vector<Dist> dists;
  std::vector<Scalar> scalars;
  std::vector<Ratio> ratios;
  std::vector<TargetCheck> targets;
  std::vector<DensityCurve> density;
  std::vector<std::string> notes;  // skipped parts, caveats
  double wall_s = 0;

  const Dist* dist(const std::string& name) const;
  std::optional<double> scalar(const std::string& name) const;
};

Result<SuiteResults> run_suite(const SuiteOptions& opts);

MachineInfo machine_info();

}  // namespace vicvmm::bench
