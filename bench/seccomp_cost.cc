// What seccomp costs a vCPU thread: a thread start (with its first malloc)
// with and without installing the vCPU allow-list, and a cheap system call
// (gettid) with and without the filter, alternated round by round; medians.
//   build/bench/vicvmm-seccomp-cost
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "vmm/machine.h"
#include "vmm/seccomp/seccomp.h"

using namespace vicvmm;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main() {
  constexpr int kRounds = 10, kThreads = 50, kCalls = 100'000;
  seccomp::set_enabled(true);
  std::vector<double> start_plain, start_confined, call_plain, call_confined;
  for (int round = 0; round < kRounds; ++round) {
    for (bool confine : {false, true}) {
      for (int i = 0; i < kThreads; ++i) {
        uint64_t t0 = monotonic_ns();
        std::thread t([confine] {
          if (confine) {
            if (!seccomp::confine_current_thread(seccomp::ThreadKind::Vcpu)) std::abort();
          } else {
            void* volatile first = std::malloc(1);  // what confining does first
            std::free(first);
          }
        });
        t.join();
        (confine ? start_confined : start_plain).push_back((monotonic_ns() - t0) / 1e3);
      }
      std::thread t([confine, &call_plain, &call_confined] {
        if (confine && !seccomp::confine_current_thread(seccomp::ThreadKind::Vcpu)) std::abort();
        uint64_t t0 = monotonic_ns();
        for (int i = 0; i < kCalls; ++i) syscall(SYS_gettid);
        (confine ? call_confined : call_plain).push_back(static_cast<double>(monotonic_ns() - t0) / kCalls);
      });
      t.join();
    }
  }
  std::printf("thread start + join: %.1f us plain, %.1f us with the vcpu filter (median of %d each)\n",
              median(start_plain), median(start_confined), kRounds * kThreads);
  std::printf("gettid(): %.0f ns plain, %.0f ns under the vcpu filter (median of %d rounds of %d)\n",
              median(call_plain), median(call_confined), kRounds, kCalls);
  return 0;
}
