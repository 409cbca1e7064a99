// The soak: clone/start/run/destroy cycles of the tiny template guest, in
// one process, sampling what would grow if anything leaked: open file
// descriptors, the process's RSS and the host kernel's memory. A benchmark
// (`vicvmm bench --soak N`), not a test: it takes minutes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vmm/kvm/kvm.h"
#include "vmm/result.h"

namespace vicvmm::bench {

struct SoakSample {
  uint64_t cycles = 0;
  uint64_t open_fds = 0;
  uint64_t rss_kib = 0;
  uint64_t kernel_kib = 0;  // Slab + KernelStack + PageTables + VmallocUsed, host-wide (/proc/meminfo)
  double seconds = 0;       // since the start
};

struct SoakOptions {
  uint64_t cycles = 100000;
  uint64_t every = 1000;  // sample after this many cycles (and once before the first)
};

// Runs the cycles; `on_sample` sees each sample as it is taken. Fails on
// the first cycle whose clone does not run to its exit.
Result<std::vector<SoakSample>> run_soak(const Kvm& kvm, const SoakOptions& o,
                                         const std::function<void(const SoakSample&)>& on_sample = {});

// Three small line plots (fds, RSS, kernel memory) against cycles, as SVG.
std::string soak_svg(const std::vector<SoakSample>& samples);

}  // namespace vicvmm::bench
