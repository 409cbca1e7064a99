// The instructions the nested-PVM host cannot emulate at CPL0 (HOST.md), seen
// from inside the guest (guest/tests/assist.S). Whether they ran natively
// (hardware KVM) or failed emulation and were performed by HostQuirks, the
// guest must see the same thing.
#include <cstdio>

#include "tests/kvm/harness.h"
#include "vmm/host/nested_pvm.h"

using namespace vicvmm;
using namespace vicvmm::test;

namespace {

uint64_t result(const Machine& m, uint64_t off) { return read_u64(m, TG_RESULT_GPA + off); }

}  // namespace

TEST_CASE("emulation assists: int3, ud2, stac/clac, x87 control and ldmxcsr behave as on hardware",
          "[kvm][assist]") {
  auto m = boot_guest(tiny_config(), "assist");
  auto probe = std::make_shared<Recorder>();
  REQUIRE_OK(m->io_bus().insert(probe, TG_PROBE_PORT, 4));

  auto run = run_guest(*m);
  const uint64_t step = result(*m, TA_STEP);
  const uint64_t other = result(*m, TA_OTHER_VEC);
  CAPTURE(step, other, result(*m, TA_OTHER_RIP));
  CHECK(run.stop.reason == StopReason::CommandExited);
  CHECK(run.stop.exit_status == 0);  // 0x80 | vector when an unexpected exception came
  CHECK(other == 0);
  CHECK(step == TA_STEP_DONE);
  CHECK(result(*m, TA_MAGIC) == TG_MAGIC);

  // int3: #BP handler ran once, its frame holds the address after the int3.
  const uint64_t bp_expect = result(*m, TA_BP_EXPECT);
  CHECK(result(*m, TA_BP_COUNT) == 1);
  CHECK(result(*m, TA_BP_RIP) == bp_expect);
  CHECK(result(*m, TA_BP_CS) == TG_CODE_SELECTOR);

  // ud2: #UD handler ran once with the ud2's own address, and stepping over
  // it resumed the guest.
  const uint64_t ud_expect = result(*m, TA_UD_EXPECT);
  CHECK(result(*m, TA_UD_COUNT) == 1);
  CHECK(result(*m, TA_UD_RIP) == ud_expect);
  CHECK(result(*m, TA_UD_CS) == TG_CODE_SELECTOR);
  CHECK(result(*m, TA_AFTER_UD) == 1);
  CHECK(ud_expect > bp_expect);

  // The handlers also reported vector and saved RIP on the probe port.
  const std::vector<Recorder::Access> reports = {
      {true, 0, 4, 3}, {true, 0, 4, bp_expect & 0xffffffff}, {true, 0, 4, 6}, {true, 0, 4, ud_expect & 0xffffffff}};
  CHECK(probe->accesses() == reports);

  // stac/clac toggle RFLAGS.AC, with CR4.SMAP clear and set (only when the
  // guest's CPUID has SMAP; the nested host always shows the host's).
  const bool smap = result(*m, TA_SMAP) == 1;
  const uint64_t cr4 = result(*m, TA_CR4);
  CHECK((cr4 & TG_CR4_OSFXSR) != 0);
  CHECK(((cr4 & TG_CR4_SMAP) != 0) == smap);
  if (smap) {
    CHECK((result(*m, TA_FLAGS_START) & TG_RFLAGS_AC) == 0);
    CHECK((result(*m, TA_FLAGS_STAC) & TG_RFLAGS_AC) != 0);
    CHECK((result(*m, TA_FLAGS_CLAC) & TG_RFLAGS_AC) == 0);
    CHECK((result(*m, TA_FLAGS_STAC2) & TG_RFLAGS_AC) != 0);
    CHECK((result(*m, TA_FLAGS_CLAC2) & TG_RFLAGS_AC) == 0);
  } else {
    WARN("the guest's CPUID has no SMAP: stac/clac not exercised");
  }

  const HostQuirks& q = m->quirks();
  auto n = [&](AssistKind k) { return static_cast<unsigned long long>(q.count(k)); };
  std::printf("assist guest on %s host in %.3f s: smap=%d, assists int3=%llu ud2=%llu stac=%llu clac=%llu "
              "x87-control=%llu ldmxcsr=%llu\n",
              host_kind_name(q.kind()), run.seconds, smap ? 1 : 0, n(AssistKind::Int3), n(AssistKind::Ud2),
              n(AssistKind::Stac), n(AssistKind::Clac), n(AssistKind::SkipX87), n(AssistKind::SkipLdmxcsr));
  if (q.active()) {
    // What failed emulation on the nested-PVM hosts when measured (Nov 2026):
    // int3, stac, clac, fwait, fnclex and ldmxcsr. Not asserted, because the
    // in-kernel emulator handled them itself: ud2 (KVM injects the #UD) and
    // fninit (db e3).
    CHECK(q.count(AssistKind::Int3) > 0);
    if (smap) {
      CHECK(q.count(AssistKind::Stac) > 0);
      CHECK(q.count(AssistKind::Clac) > 0);
    }
    CHECK(q.count(AssistKind::SkipX87) > 0);
    CHECK(q.count(AssistKind::SkipLdmxcsr) > 0);
    // Never more assists than candidate instructions: int3, ud2, 2 stac,
    // 2 clac, fninit, fwait, fnclex, ldmxcsr.
    CHECK(q.total_assists() <= 10);
  } else {
    CHECK(q.total_assists() == 0);
  }
}

TEST_CASE("on the nested host, int3 without the assist stops with EmulationFailure", "[kvm][assist]") {
  if (detect_host_kind() != HostKind::NestedPvm) {
    SUCCEED("hardware KVM: int3 runs natively, nothing to show");
    return;
  }
  MachineConfig cfg = tiny_config();
  cfg.host = HostKind::HardwareKvm;  // HostQuirks inactive
  auto m = boot_guest(cfg, "assist");
  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::EmulationFailure);
  CHECK(m->quirks().total_assists() == 0);
  // It stopped at the int3, after the IDT was built and before any handler ran.
  CHECK(result(*m, TA_STEP) == TA_STEP_IDT);
  CHECK(result(*m, TA_BP_COUNT) == 0);
  const uint64_t int3_rip = result(*m, TA_BP_EXPECT) - 1;
  CHECK_THAT(run.stop.detail, Catch::Matchers::Contains(fmt::format("rip {:#x}", int3_rip)));
}
