// kvm-tests: the tiny freestanding guests (guest/tests) on a real KVM VM.
// Without a usable /dev/kvm this fails loudly, unless VICVMM_SKIP_KVM=1 says
// that is expected (a machine with no KVM at all).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "vmm/kvm/kvm.h"

int main(int argc, char** argv) {
  auto kvm = vicvmm::Kvm::open();
  if (!kvm) {
    const char* skip = std::getenv("VICVMM_SKIP_KVM");
    if (skip && std::strcmp(skip, "1") == 0) {
      std::printf("skipping KVM tests: %s\n", kvm.error().message.c_str());
      return 0;
    }
    std::fprintf(stderr, "KVM tests cannot run: %s\n(set VICVMM_SKIP_KVM=1 to skip them on a host without KVM)\n",
                 kvm.error().message.c_str());
    return 1;
  }
  return Catch::Session().run(argc, argv);
}
