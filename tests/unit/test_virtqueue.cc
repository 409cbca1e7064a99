// The split virtqueue against well-formed and hostile rings.
#include <catch2/catch.hpp>

#include "tests/unit/virtio_driver.h"
#include "vmm/virtio/queue.h"

using namespace vicvmm;
using namespace vicvmm::virtio;
using vicvmm::test::FakeDriver;
using vicvmm::test::QueueLayout;

namespace {

constexpr uint64_t kMem = 1 << 20;
constexpr uint64_t kBuf = 0x10000;  // data buffers from here

struct Fixture {
  GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  FakeDriver drv{mem};
  SplitQueue q{256};

  explicit Fixture(bool event_idx = false, bool indirect = true) {
    q.set_size(drv.layout().size);
    q.set_desc(drv.layout().desc);
    q.set_avail(drv.layout().avail);
    q.set_used(drv.layout().used);
    REQUIRE(q.enable(mem, event_idx, indirect) == QueueFault::None);
  }
  // Pops one chain expecting the given fault.
  QueueFault pop_fault() {
    Chain c;
    CHECK_FALSE(q.pop(mem, c));
    return q.fault();
  }
};

}  // namespace

TEST_CASE("virtqueue: a readable + writable chain pops, completes and reaches the used ring") {
  Fixture f;
  (void)f.mem.fill(kBuf, 0xab, 16);
  f.drv.set_desc(0, kBuf, 16, kDescNext, 3);
  f.drv.set_desc(3, kBuf + 0x1000, 100, kDescWrite);
  f.drv.offer(0);
  Chain c;
  REQUIRE(f.q.pop(f.mem, c));
  CHECK(c.head == 0);
  REQUIRE(c.segments.size() == 2);
  CHECK_FALSE(c.segments[0].writable);
  CHECK(c.segments[1].writable);
  CHECK(c.readable_bytes == 16);
  CHECK(c.writable_bytes == 100);
  uint8_t hdr[20] = {};
  CHECK(c.read(0, hdr) == 16);  // only 16 readable bytes exist
  CHECK(hdr[15] == 0xab);
  const uint8_t out[4] = {1, 2, 3, 4};
  CHECK(c.write(2, out) == 4);
  CHECK(*f.mem.read_obj<uint8_t>(kBuf + 0x1000 + 5) == 4);
  CHECK_FALSE(f.q.pop(f.mem, c));  // empty now, and no fault
  CHECK(f.q.fault() == QueueFault::None);
  f.q.push_used(c.head, 6);
  CHECK(f.drv.used_idx() == 1);
  CHECK(f.drv.used(0).id == 0);
  CHECK(f.drv.used(0).len == 6);
  CHECK(f.q.should_notify());
  CHECK_FALSE(f.q.should_notify());  // nothing new since
}

TEST_CASE("virtqueue: ring indices wrap around 65535") {
  Fixture f;
  f.drv.set_desc(0, kBuf, 8, 0);
  // Start both sides just before the wrap, as after a long uptime.
  QueueState s = f.q.state();
  s.last_avail = s.next_used = s.signalled_used = 65534;
  REQUIRE(f.q.restore(f.mem, s) == QueueFault::None);
  f.drv.set_avail_idx(65534);
  for (int i = 0; i < 4; ++i) {
    f.drv.offer(0);
    Chain c;
    REQUIRE(f.q.pop(f.mem, c));
    f.q.push_used(c.head, 0);
  }
  CHECK(f.drv.used_idx() == 2);  // 65534 + 4 mod 2^16
  CHECK(f.q.fault() == QueueFault::None);
}

TEST_CASE("virtqueue: queue configuration is validated when enabled") {
  GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  auto try_enable = [&](uint16_t size, uint64_t desc, uint64_t avail, uint64_t used) {
    SplitQueue q(256);
    q.set_size(size);
    q.set_desc(desc);
    q.set_avail(avail);
    q.set_used(used);
    QueueFault f = q.enable(mem, true, true);
    CHECK(q.ready() == (f == QueueFault::None));
    return f;
  };
  CHECK(try_enable(8, 0x1000, 0x2000, 0x3000) == QueueFault::None);
  CHECK(try_enable(6, 0x1000, 0x2000, 0x3000) == QueueFault::BadQueueSize);    // not a power of two
  CHECK(try_enable(0, 0x1000, 0x2000, 0x3000) == QueueFault::BadQueueSize);
  CHECK(try_enable(512, 0x1000, 0x4000, 0x8000) == QueueFault::BadQueueSize);  // above the device's 256
  CHECK(try_enable(8, 0x1008, 0x2000, 0x3000) == QueueFault::RingMisaligned);
  CHECK(try_enable(8, 0x1000, 0x2001, 0x3000) == QueueFault::RingMisaligned);
  CHECK(try_enable(8, 0x1000, 0x2000, 0x3002) == QueueFault::RingMisaligned);
  CHECK(try_enable(8, kMem - 64, 0x2000, 0x3000) == QueueFault::RingOutOfRange);  // runs past RAM
  CHECK(try_enable(8, 0x1000, 0xffff'ffff'ffff'fff0ull, 0x3000) == QueueFault::RingOutOfRange);
  CHECK(try_enable(8, 0x1000, 0x2000, 0xfee0'0000ull) == QueueFault::RingOutOfRange);  // MMIO, not RAM
}

TEST_CASE("virtqueue: a descriptor loop is a fault, not a hang") {
  Fixture f;
  f.drv.set_desc(0, kBuf, 8, kDescNext, 1);
  f.drv.set_desc(1, kBuf, 8, kDescNext, 2);
  f.drv.set_desc(2, kBuf, 8, kDescNext, 1);  // back to 1
  f.drv.offer(0);
  CHECK(f.pop_fault() == QueueFault::DescriptorLoop);
  CHECK(f.q.broken());
  Chain c;
  CHECK_FALSE(f.q.pop(f.mem, c));  // stays broken until reset
  f.q.reset();
  CHECK_FALSE(f.q.broken());
}

TEST_CASE("virtqueue: a chain through every descriptor and back is longer than the queue") {
  Fixture f;
  for (uint16_t i = 0; i < 8; ++i) f.drv.set_desc(i, kBuf, 8, kDescNext, (i + 1) % 8);
  f.drv.offer(0);
  CHECK(f.pop_fault() == QueueFault::ChainTooLong);
}

TEST_CASE("virtqueue: buffers outside guest RAM are refused") {
  SECTION("past the end") {
    Fixture f;
    f.drv.set_desc(0, kMem - 8, 16, 0);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BufferOutOfRange);
  }
  SECTION("address + length wraps") {
    Fixture f;
    f.drv.set_desc(0, 0xffff'ffff'ffff'fff0ull, 0x20, 0);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BufferOutOfRange);
  }
  SECTION("second descriptor of a chain") {
    Fixture f;
    f.drv.set_desc(0, kBuf, 16, kDescNext, 1);
    f.drv.set_desc(1, 0x1'0000'0000ull, 16, kDescWrite);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BufferOutOfRange);
  }
  SECTION("a zero-length descriptor anywhere is harmless") {
    Fixture f;
    f.drv.set_desc(0, 0xdead'beef'0000ull, 0, 0);
    f.drv.offer(0);
    Chain c;
    CHECK(f.q.pop(f.mem, c));
    CHECK(c.readable_bytes == 0);
  }
}

TEST_CASE("virtqueue: guest indices out of range are refused") {
  SECTION("head") {
    Fixture f;
    f.drv.offer(8);  // queue size is 8
    CHECK(f.pop_fault() == QueueFault::HeadOutOfRange);
  }
  SECTION("next") {
    Fixture f;
    f.drv.set_desc(0, kBuf, 8, kDescNext, 200);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::NextOutOfRange);
  }
  SECTION("available index more than a queue ahead") {
    Fixture f;
    f.drv.set_avail_idx(9);
    CHECK(f.pop_fault() == QueueFault::AvailIndexJump);
  }
}

TEST_CASE("virtqueue: device-readable after device-writable is refused") {
  Fixture f;
  f.drv.set_desc(0, kBuf, 8, kDescWrite | kDescNext, 1);
  f.drv.set_desc(1, kBuf, 8, 0);
  f.drv.offer(0);
  CHECK(f.pop_fault() == QueueFault::ReadableAfterWritable);
}

TEST_CASE("virtqueue: indirect descriptor tables") {
  constexpr uint64_t kTable = 0x8000;
  SECTION("well formed") {
    Fixture f;
    f.drv.set_desc_at(kTable, 0, kBuf, 16, kDescNext, 2);
    f.drv.set_desc_at(kTable, 2, kBuf + 0x100, 512, kDescWrite | kDescNext, 1);
    f.drv.set_desc_at(kTable, 1, kBuf + 0x400, 1, kDescWrite);
    f.drv.set_desc(5, kTable, 3 * 16, kDescIndirect);
    f.drv.offer(5);
    Chain c;
    REQUIRE(f.q.pop(f.mem, c));
    CHECK(c.head == 5);
    CHECK(c.segments.size() == 3);
    CHECK(c.readable_bytes == 16);
    CHECK(c.writable_bytes == 513);
  }
  SECTION("not negotiated") {
    Fixture f(false, /*indirect=*/false);
    f.drv.set_desc_at(kTable, 0, kBuf, 16, 0);
    f.drv.set_desc(0, kTable, 16, kDescIndirect);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BadIndirect);
  }
  SECTION("length not a multiple of 16") {
    Fixture f;
    f.drv.set_desc(0, kTable, 24, kDescIndirect);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BadIndirect);
  }
  SECTION("nested") {
    Fixture f;
    f.drv.set_desc_at(kTable, 0, kTable, 16, kDescIndirect);
    f.drv.set_desc(0, kTable, 16, kDescIndirect);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BadIndirect);
  }
  SECTION("with NEXT") {
    Fixture f;
    f.drv.set_desc_at(kTable, 0, kBuf, 16, 0);
    f.drv.set_desc(0, kTable, 16, kDescIndirect | kDescNext, 1);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BadIndirect);
  }
  SECTION("loop inside the table") {
    Fixture f;
    f.drv.set_desc_at(kTable, 0, kBuf, 16, kDescNext, 1);
    f.drv.set_desc_at(kTable, 1, kBuf, 16, kDescNext, 2);
    f.drv.set_desc_at(kTable, 2, kBuf, 16, kDescNext, 1);
    f.drv.set_desc_at(kTable, 3, kBuf, 16, 0);
    f.drv.set_desc(0, kTable, 4 * 16, kDescIndirect);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::DescriptorLoop);
  }
  SECTION("next past the table") {
    Fixture f;
    f.drv.set_desc_at(kTable, 0, kBuf, 16, kDescNext, 4);
    f.drv.set_desc(0, kTable, 2 * 16, kDescIndirect);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::NextOutOfRange);
  }
  SECTION("table outside RAM") {
    Fixture f;
    f.drv.set_desc(0, kMem - 16, 32, kDescIndirect);
    f.drv.offer(0);
    CHECK(f.pop_fault() == QueueFault::BufferOutOfRange);
  }
}

TEST_CASE("virtqueue: a chain larger than 4 GiB is refused") {
  // Buffers may overlap, so 81 views of the same 60 MiB of RAM add up to
  // more than a 32-bit used length can report.
  GuestMemory mem = *GuestMemory::create(64ull << 20, Backing::Anonymous);
  FakeDriver drv(mem);
  SplitQueue q(256);
  q.set_size(8);
  q.set_desc(0x1000);
  q.set_avail(0x2000);
  q.set_used(0x3000);
  REQUIRE(q.enable(mem, false, true) == QueueFault::None);
  constexpr uint64_t kTable = 0x8000;
  constexpr uint32_t kBig = 60u << 20;
  for (uint16_t i = 0; i < 80; ++i) drv.set_desc_at(kTable, i, 0x100000, kBig, kDescWrite | kDescNext, i + 1);
  drv.set_desc_at(kTable, 80, 0x100000, kBig, kDescWrite);
  drv.set_desc(0, kTable, 81 * 16, kDescIndirect);
  drv.offer(0);
  Chain c;
  CHECK_FALSE(q.pop(mem, c));
  CHECK(q.fault() == QueueFault::ChainTooLarge);
}

TEST_CASE("virtqueue: EVENT_IDX suppresses interrupts and asks for kicks") {
  Fixture f(/*event_idx=*/true);
  f.drv.set_desc(0, kBuf, 8, 0);
  f.drv.set_desc(1, kBuf, 8, 0);
  f.drv.set_used_event(1);  // "interrupt me when used idx passes 1"
  f.drv.offer(0);
  f.drv.offer(1);
  Chain c;
  REQUIRE(f.q.pop(f.mem, c));
  CHECK(f.drv.avail_event() == 1);  // device: kick me at the next buffer
  f.q.push_used(c.head, 0);
  CHECK_FALSE(f.q.should_notify());  // used idx 1: not past used_event yet
  REQUIRE(f.q.pop(f.mem, c));
  f.q.push_used(c.head, 0);
  CHECK(f.q.should_notify());  // used idx 2 crossed used_event + 1
  CHECK_FALSE(f.q.pop(f.mem, c));
  CHECK(f.drv.avail_event() == 2);
}

TEST_CASE("virtqueue: without EVENT_IDX the NO_INTERRUPT flag is honoured") {
  Fixture f;
  f.drv.set_desc(0, kBuf, 8, 0);
  f.drv.set_avail_flags(kAvailNoInterrupt);
  f.drv.offer(0);
  Chain c;
  REQUIRE(f.q.pop(f.mem, c));
  f.q.push_used(c.head, 0);
  CHECK_FALSE(f.q.should_notify());
}

TEST_CASE("virtqueue: state survives save and restore") {
  Fixture f;
  f.drv.set_desc(0, kBuf, 8, 0);
  f.drv.offer(0);
  Chain c;
  REQUIRE(f.q.pop(f.mem, c));
  f.q.push_used(c.head, 0);
  QueueState saved = f.q.state();
  SplitQueue copy(256);
  REQUIRE(copy.restore(f.mem, saved) == QueueFault::None);
  CHECK_FALSE(copy.pop(f.mem, c));  // nothing new: resumes after the consumed chain
  f.drv.offer(0);
  REQUIRE(copy.pop(f.mem, c));
  copy.push_used(c.head, 0);
  CHECK(f.drv.used_idx() == 2);
  SECTION("a saved queue that no longer fits guest RAM is refused") {
    QueueState bad = saved;
    bad.used = kMem;  // outside
    SplitQueue q2(256);
    CHECK(q2.restore(f.mem, bad) == QueueFault::RingOutOfRange);
    CHECK_FALSE(q2.ready());
  }
}
