// virtio-mmio on a real VM: a tiny guest kicks a queue the test prepared;
// the kick travels through an ioeventfd to the process's I/O thread, the
// device runs there, and the interrupt leaves through an irqfd. Hostile
// chains must leave the device in DEVICE_NEEDS_RESET and the VM running.
#include "tests/kvm/harness.h"
#include "tests/unit/virtio_driver.h"
#include "vmm/virtio/rng.h"

using namespace vicvmm;
using namespace vicvmm::test;
using namespace vicvmm::virtio;

static_assert(TV_NOTIFY == kMmioBase + mmio::kRegQueueNotify);

namespace {

struct VirtioVm {
  std::unique_ptr<Machine> m;
  MmioTransport* t = nullptr;
  std::shared_ptr<Rng> rng = std::make_shared<Rng>();
  std::unique_ptr<FakeDriver> drv;

  VirtioVm() {
    MachineConfig cfg = tiny_config();
    cfg.irqchip = true;  // ioeventfd + irqfd path
    m = boot_guest(cfg, "virtio_kick");
    auto slot = m->add_virtio(rng);
    REQUIRE_OK(slot);
    t = &(*slot)->transport();
    const QueueLayout layout{8, TV_DESC_GPA, TV_AVAIL_GPA, TV_USED_GPA};
    // The driver's side of the bring-up, done by the test before the guest runs.
    REQUIRE(MmioDriver(*t).bring_up(layout, kFeatureVersion1 | kFeatureIndirectDesc));
    drv = std::make_unique<FakeDriver>(m->memory(), layout);
  }
};

}  // namespace

TEST_CASE("virtio-rng through ioeventfd and irqfd fills the guest's buffer", "[kvm][virtio]") {
  VirtioVm v;
  v.drv->set_desc(0, TV_BUF_GPA, 256, kDescWrite);
  v.drv->offer(0);
  auto r = run_guest(*v.m);
  REQUIRE(r.stop.reason == StopReason::CommandExited);
  CHECK(r.stop.exit_status == 1);  // the guest saw used idx 1
  CHECK(v.drv->used(0).len == 256);
  CHECK(v.rng->bytes_served() == 256);
  CHECK(v.t->stats().notifies == 1);
  CHECK(v.t->stats().interrupts == 1);
  // The kick never exited to the vCPU loop: the only MMIO exit is the doorbell.
  CHECK(v.m->stats().mmio_exits == 1);
  CHECK(v.m->stats().mmio_unclaimed == 0);
  CHECK(v.m->virtio_cmdline().at(0) == "virtio_mmio.device=4K@0xd0000000:5");
}

TEST_CASE("hostile chains from a real guest put the device into NEEDS_RESET; the VM runs on", "[kvm][virtio]") {
  struct Case {
    const char* what;
    QueueFault fault;
    void (*setup)(FakeDriver&);
  };
  const Case cases[] = {
      {"descriptor loop", QueueFault::DescriptorLoop,
       [](FakeDriver& d) {
         d.set_desc(0, TV_BUF_GPA, 64, kDescWrite | kDescNext, 1);
         d.set_desc(1, TV_BUF_GPA, 64, kDescWrite | kDescNext, 0);
         d.offer(0);
       }},
      {"buffer outside RAM", QueueFault::BufferOutOfRange,
       [](FakeDriver& d) {
         d.set_desc(0, 0xfe000000, 64, kDescWrite);  // the doorbell page: not RAM
         d.offer(0);
       }},
      {"head out of range", QueueFault::HeadOutOfRange, [](FakeDriver& d) { d.offer(200); }},
      {"read-only buffer", QueueFault::WriteToReadOnly,
       [](FakeDriver& d) {
         d.set_desc(0, TV_BUF_GPA, 64, 0);
         d.offer(0);
       }},
      {"indirect table with a loop", QueueFault::DescriptorLoop,
       [](FakeDriver& d) {
         d.set_desc_at(TV_BUF_GPA, 0, TV_BUF_GPA + 0x1000, 64, kDescWrite | kDescNext, 1);
         d.set_desc_at(TV_BUF_GPA, 1, TV_BUF_GPA + 0x1000, 64, kDescWrite | kDescNext, 0);
         d.set_desc(0, TV_BUF_GPA, 4 * 16, kDescIndirect);  // entries 0 -> 1 -> 0 of 4
         d.offer(0);
       }},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    VirtioVm v;
    c.setup(*v.drv);
    auto r = run_guest(*v.m);
    REQUIRE(r.stop.reason == StopReason::CommandExited);
    CHECK(r.stop.exit_status == 0);  // nothing was ever used
    CHECK((v.t->status() & kStatusNeedsReset) != 0);
    CHECK(v.t->stats().faults[static_cast<size_t>(c.fault)] == 1);
    CHECK(v.t->stats().interrupts == 1);  // the configuration-change interrupt
    CHECK(v.rng->bytes_served() == 0);
  }
}
