// The virtio-mmio transport driven through its registers, as the Linux
// driver does (virtio_mmio.c: vm_probe, vm_finalize_features, vm_setup_vq),
// with virtio-rng behind it.
#include <catch2/catch.hpp>

#include <atomic>

#include "tests/unit/virtio_driver.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/rng.h"

using namespace vicvmm;
using namespace vicvmm::virtio;
using namespace vicvmm::virtio::mmio;
using vicvmm::test::FakeDriver;

namespace {

constexpr uint64_t kMem = 1 << 20;
constexpr uint64_t kBuf = 0x10000;

struct Rig {
  GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  std::shared_ptr<Rng> rng = std::make_shared<Rng>();
  std::atomic<int> irqs{0};
  MmioTransport t{rng, mem, [this] { ++irqs; }};
  FakeDriver drv{mem};

  vicvmm::test::MmioDriver regs{t};

  uint32_t rd(uint64_t off) { return regs.rd(off); }
  void wr(uint64_t off, uint32_t v) { regs.wr(off, v); }
  uint64_t device_features() { return regs.device_features(); }
  uint32_t negotiate(uint64_t features) { return regs.negotiate(features); }
  void setup_queue(uint16_t size = 8) { regs.setup_queue(drv.layout(), size); }
  void driver_ok() { regs.driver_ok(); }
  void bring_up() { REQUIRE(regs.bring_up(drv.layout(), kFeatureVersion1 | kFeatureEventIdx)); }
};

}  // namespace

TEST_CASE("virtio-mmio: identification registers") {
  Rig r;
  CHECK(r.rd(kRegMagic) == 0x74726976);
  CHECK(r.rd(kRegVersion) == 2);
  CHECK(r.rd(kRegDeviceId) == kDeviceRng);
  r.wr(kRegQueueSel, 0);
  CHECK(r.rd(kRegQueueNumMax) == 256);
  r.wr(kRegQueueSel, 1);
  CHECK(r.rd(kRegQueueNumMax) == 0);  // rng has one queue
  uint64_t f = r.device_features();
  CHECK((f & kFeatureVersion1) != 0);
  CHECK((f & kFeatureEventIdx) != 0);
  CHECK((f & kFeatureIndirectDesc) != 0);
  // Narrow register reads are not 32-bit registers: they read 0.
  uint8_t b[2] = {0xff, 0xff};
  r.t.read(0, kRegMagic, b);
  CHECK((b[0] | b[1]) == 0);
}

TEST_CASE("virtio-mmio: feature negotiation") {
  Rig r;
  CHECK((r.negotiate(kFeatureVersion1) & kStatusFeaturesOk) != 0);
  // Legacy (no VERSION_1) and features never offered do not get FEATURES_OK.
  CHECK((r.negotiate(0) & kStatusFeaturesOk) == 0);
  CHECK((r.negotiate(kFeatureVersion1 | (1ull << 40)) & kStatusFeaturesOk) == 0);
  // DRIVER_OK without FEATURES_OK does not stick.
  r.negotiate(0);
  r.wr(kRegStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  CHECK((r.rd(kRegStatus) & kStatusDriverOk) == 0);
}

TEST_CASE("virtio-mmio: rng fills a guest buffer and interrupts once per batch") {
  Rig r;
  r.bring_up();
  (void)r.mem.fill(kBuf, 0, 4096);
  r.drv.set_desc(0, kBuf, 64, kDescWrite);
  r.drv.set_desc(1, kBuf + 64, 64, kDescWrite);
  r.drv.set_used_event(0);
  r.drv.offer(0);
  r.drv.offer(1);
  r.wr(kRegQueueNotify, 0);
  CHECK(r.drv.used_idx() == 2);
  CHECK(r.drv.used(0).len == 64);
  CHECK(r.drv.used(1).len == 64);
  CHECK(r.irqs == 1);
  CHECK((r.rd(kRegInterruptStatus) & kInterruptVring) != 0);
  r.wr(kRegInterruptAck, kInterruptVring);
  CHECK(r.rd(kRegInterruptStatus) == 0);
  std::vector<uint8_t> bytes(128);
  REQUIRE(r.mem.read(kBuf, bytes));
  int zeros = 0;
  for (auto b : bytes) zeros += b == 0;
  CHECK(zeros < 16);  // random, not left zero (expected ~0.5 of 128)
  CHECK(r.rng->bytes_served() == 128);
  CHECK(r.t.stats().chains == 2);
}

TEST_CASE("virtio-mmio: a hostile chain sets DEVICE_NEEDS_RESET until the driver resets") {
  Rig r;
  r.bring_up();
  r.drv.set_desc(0, kBuf, 64, kDescWrite | kDescNext, 0);  // loops onto itself
  r.drv.offer(0);
  r.wr(kRegQueueNotify, 0);
  CHECK((r.rd(kRegStatus) & kStatusNeedsReset) != 0);
  CHECK((r.rd(kRegInterruptStatus) & kInterruptConfig) != 0);
  CHECK(r.irqs == 1);
  CHECK(r.t.stats().faults[static_cast<size_t>(QueueFault::DescriptorLoop)] == 1);
  CHECK(r.t.stats().resets_needed == 1);
  CHECK(r.t.stats_line().find("descriptor loop: 1") != std::string::npos);
  // Further kicks do nothing; the driver cannot clear NEEDS_RESET by writing status.
  r.drv.set_desc(0, kBuf, 64, kDescWrite);
  r.wr(kRegQueueNotify, 0);
  CHECK(r.drv.used_idx() == 0);
  r.wr(kRegStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  CHECK((r.rd(kRegStatus) & kStatusNeedsReset) != 0);
  // A reset brings the device back; the queue is set up again from scratch.
  r.wr(kRegStatus, 0);
  CHECK(r.rd(kRegStatus) == 0);
  CHECK(r.rd(kRegQueueReady) == 0);
  r.drv.restart();
  r.bring_up();
  r.drv.set_desc(0, kBuf, 64, kDescWrite);
  r.drv.offer(0);
  r.wr(kRegQueueNotify, 0);
  CHECK(r.drv.used_idx() == 1);
}

TEST_CASE("virtio-mmio: bad queue setup is contained") {
  Rig r;
  REQUIRE((r.negotiate(kFeatureVersion1) & kStatusFeaturesOk) != 0);
  SECTION("size not a power of two") {
    r.setup_queue(6);
    CHECK(r.rd(kRegQueueReady) == 0);
    CHECK((r.rd(kRegStatus) & kStatusNeedsReset) != 0);
    CHECK(r.t.stats().faults[static_cast<size_t>(QueueFault::BadQueueSize)] == 1);
  }
  SECTION("queue index out of range is ignored") {
    r.wr(kRegQueueSel, 7);
    r.wr(kRegQueueNum, 8);
    r.wr(kRegQueueReady, 1);
    CHECK(r.rd(kRegQueueReady) == 0);
    r.wr(kRegQueueNotify, 7);
    r.wr(kRegQueueNotify, 0xffffffff);
    CHECK((r.rd(kRegStatus) & kStatusNeedsReset) == 0);
  }
  SECTION("a read-only buffer offered to rng") {
    r.setup_queue();
    r.driver_ok();
    r.drv.set_desc(0, kBuf, 64, 0);
    r.drv.offer(0);
    r.wr(kRegQueueNotify, 0);
    CHECK((r.rd(kRegStatus) & kStatusNeedsReset) != 0);
    CHECK(r.t.stats().faults[static_cast<size_t>(QueueFault::WriteToReadOnly)] == 1);
  }
  SECTION("layout registers are frozen while the queue is live") {
    r.setup_queue();
    r.wr(kRegQueueDescLow, 0x5000);
    CHECK(r.t.save().queues[0].desc == r.drv.layout().desc);
  }
}

TEST_CASE("virtio-mmio: transport state moves to another transport (clone restore)") {
  Rig a;
  a.bring_up();
  a.drv.set_desc(0, kBuf, 32, kDescWrite);
  a.drv.offer(0);
  a.wr(kRegQueueNotify, 0);
  TransportState s = a.t.save();
  CHECK(s.regs.status == (kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk));
  REQUIRE(s.queues.size() == 1);
  CHECK(s.queues[0].last_avail == 1);

  // A second transport over the same memory continues where the first stopped.
  auto rng2 = std::make_shared<Rng>();
  MmioTransport b(rng2, a.mem, nullptr);
  REQUIRE(b.restore(s));
  a.drv.offer(0);
  uint8_t kick[4] = {0, 0, 0, 0};
  b.write(0, kRegQueueNotify, kick);
  CHECK(a.drv.used_idx() == 2);
  CHECK(rng2->bytes_served() == 32);
  // The host-side reset (clone reset-in-place) returns it to status 0.
  b.reset();
  CHECK(b.status() == 0);
}
