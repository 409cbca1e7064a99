// Exits reaching the VMM: port I/O, MMIO, and every way a guest stops.
#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include "guest/abi/vicvmm_abi.h"
#include "tests/kvm/harness.h"
#include "vmm/unique_fd.h"

using namespace vicvmm;
using namespace vicvmm::test;

static_assert(TG_DOORBELL_MMIO == VIC_DOORBELL_MMIO_GPA);
static_assert(TG_DOORBELL_PORT == VIC_DOORBELL_PORT);
static_assert(TG_EV_EXIT == VIC_EV_EXIT && TG_EV_PING == VIC_EV_PING);
static_assert(TG_DOORBELL(TG_EV_EXIT, 42) == VIC_DOORBELL(VIC_EV_EXIT, 42));

namespace {

std::string drain(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

TEST_CASE("port I/O exits reach the bus: UART to console_fd, doorbell port, probe port", "[kvm][io]") {
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
  UniqueFd rd(p[0]), wr(p[1]);

  MachineConfig cfg = tiny_config();
  cfg.console_fd = wr.get();
  auto m = boot_guest(cfg, "io_out");
  auto probe = std::make_shared<Recorder>();
  REQUIRE_OK(m->io_bus().insert(probe, TG_PROBE_PORT, 4));

  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::HaltedNoInterrupts);
  CHECK(read_u64(*m, TG_RESULT_GPA + TG_R_MAGIC) == TG_MAGIC);

  CHECK(drain(rd.get()) == "ok\n");
  CHECK(m->serial().bytes_out() == 3);

  // The doorbell port reads back the ABI version; the two PINGs were decoded.
  CHECK(read_u32(*m, TG_RESULT_GPA + TG_R_PORT_IN) == VIC_MAILBOX_VERSION);
  CHECK(m->stats().doorbell_pings.load() == 2);

  const std::vector<Recorder::Access> expected = {{true, 0, 4, 0x12345678}, {true, 0, 1, 0xab}};
  CHECK(probe->accesses() == expected);

  // 3 UART + 1 in + 2 doorbell + 2 probe, each its own exit; then one HLT.
  CHECK(m->stats().io_exits.load() == 8);
  CHECK(m->stats().io_unclaimed.load() == 0);
  CHECK(m->stats().hlt_exits.load() == 1);
}

TEST_CASE("MMIO exits: doorbell page read returns the ABI version, EXIT write stops the machine", "[kvm][mmio]") {
  auto m = boot_guest(tiny_config(), "mmio");
  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::CommandExited);
  CHECK(run.stop.exit_status == 42);
  CHECK(read_u64(*m, TG_RESULT_GPA + TG_R_MAGIC) == TG_MAGIC);
  CHECK(read_u32(*m, TG_RESULT_GPA + TG_R_MMIO_IN) == VIC_MAILBOX_VERSION);
  CHECK(m->stats().doorbell_pings.load() == 1);
  CHECK(m->stats().mmio_exits.load() == 3);  // load, PING store, EXIT store
  CHECK(m->stats().mmio_unclaimed.load() == 0);
  CHECK(m->stats().io_exits.load() == 0);
}

TEST_CASE("i8042 reset command stops with GuestReset", "[kvm][shutdown]") {
  auto m = boot_guest(tiny_config(), "i8042_reset");
  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::GuestReset);
  CHECK(m->stats().hlt_exits.load() == 0);
}

TEST_CASE("an exception with an empty IDT triple-faults: TripleFault", "[kvm][shutdown]") {
  // 0: int3 (on the nested host this goes through the #BP injection assist),
  // 1: ud2 (#UD injection assist there), 2: divide error (plain emulation).
  const uint64_t which = GENERATE(0u, 1u, 2u);
  CAPTURE(which);
  auto m = boot_guest(tiny_config(), "triple_fault", which);
  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::TripleFault);
  CHECK(m->stats().hlt_exits.load() == 0);
  // On the nested host the int3 reaches the IDT through the #BP assist.
  if (which == 0 && m->quirks().active()) CHECK(m->quirks().count(AssistKind::Int3) == 1);
}

TEST_CASE("cli; hlt without an irqchip: KVM_EXIT_HLT gives HaltedNoInterrupts", "[kvm][shutdown]") {
  MachineConfig cfg = tiny_config();
  cfg.irqchip = false;
  auto m = boot_guest(cfg, "hlt_cli");
  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::HaltedNoInterrupts);
  CHECK(m->stats().hlt_exits.load() == 1);
  CHECK(run.seconds < 1.0);
}

TEST_CASE("cli; hlt with the in-kernel irqchip: the watchdog finds the halted vCPU", "[kvm][shutdown]") {
  MachineConfig cfg = tiny_config();
  cfg.irqchip = true;
  auto m = boot_guest(cfg, "hlt_cli");
  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::HaltedNoInterrupts);
  CHECK(m->stats().hlt_exits.load() == 0);   // HLT stays in the kernel
  CHECK(m->stats().interrupted.load() >= 1);  // the watchdog's kick
  CHECK(run.seconds < 5.0);                   // it looks once a second
}

TEST_CASE("a guest that never stops ends with Timeout", "[kvm][shutdown]") {
  MachineConfig cfg = tiny_config();
  cfg.timeout = std::chrono::milliseconds(1000);
  auto m = boot_guest(cfg, "spin");
  auto run = run_guest(*m, /*expect_timeout=*/true);
  CHECK(run.stop.reason == StopReason::Timeout);
  CHECK(run.seconds >= 0.9);
  CHECK(run.seconds < 5.0);
}

TEST_CASE("request_stop from another thread stops a running guest", "[kvm][shutdown]") {
  auto m = boot_guest(tiny_config(), "spin");
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    m->request_stop({StopReason::Stopped, 0, "test"});
  });
  auto run = run_guest(*m);
  stopper.join();
  CHECK(run.stop.reason == StopReason::Stopped);
  CHECK(run.stop.detail == "test");
  CHECK(run.seconds < 5.0);
  // A stopped machine does not run again.
  CHECK_FALSE(m->run().has_value());
}
