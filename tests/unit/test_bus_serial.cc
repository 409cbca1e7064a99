#include <unistd.h>

#include <catch2/catch.hpp>

#include "vmm/devices/bus.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"

using namespace vicvmm;

namespace {
struct Recorder : BusDevice {
  const char* name() const override { return "recorder"; }
  void read(uint64_t, uint64_t offset, std::span<uint8_t> d) override {
    for (auto& b : d) b = static_cast<uint8_t>(offset);
  }
  void write(uint64_t base, uint64_t offset, std::span<const uint8_t> d) override {
    last_base = base;
    last_offset = offset;
    last = d[0];
  }
  uint64_t last_base = 0, last_offset = 0;
  uint8_t last = 0;
};
}  // namespace

TEST_CASE("bus dispatches to the owning range with its offset") {
  Bus bus("test");
  auto a = std::make_shared<Recorder>();
  auto b = std::make_shared<Recorder>();
  REQUIRE(bus.insert(a, 0x100, 8));
  REQUIRE(bus.insert(b, 0x200, 0x10));
  uint8_t v = 0x42;
  CHECK(bus.write(0x203, {&v, 1}));
  CHECK(b->last_base == 0x200);
  CHECK(b->last_offset == 3);
  uint8_t r[2];
  CHECK(bus.read(0x106, r));
  CHECK(r[0] == 6);
  // Unclaimed: reads float high, writes go nowhere.
  CHECK_FALSE(bus.read(0x300, r));
  CHECK(r[0] == 0xff);
  CHECK_FALSE(bus.write(0x108, {&v, 1}));
  // An access straddling the end of a range is not claimed.
  CHECK_FALSE(bus.read(0x107, r));
}

TEST_CASE("bus rejects overlapping, empty and wrapping ranges") {
  Bus bus("test");
  auto a = std::make_shared<Recorder>();
  REQUIRE(bus.insert(a, 0x100, 8));
  CHECK_FALSE(bus.insert(a, 0x107, 2));
  CHECK_FALSE(bus.insert(a, 0xf0, 0x11));
  CHECK_FALSE(bus.insert(a, 0x500, 0));
  CHECK_FALSE(bus.insert(a, ~0ull - 1, 4));
  CHECK(bus.insert(a, 0x108, 1));
}

namespace {
uint8_t rd(Serial& s, uint64_t off) {
  uint8_t v;
  s.read(0x3f8, off, {&v, 1});
  return v;
}
void wr(Serial& s, uint64_t off, uint8_t v) { s.write(0x3f8, off, {&v, 1}); }
}  // namespace

TEST_CASE("serial transmits to its fd and reports complete lines") {
  int p[2];
  REQUIRE(pipe(p) == 0);
  std::vector<std::string> lines;
  int irqs = 0;
  {
    Serial s(p[1], [&] { ++irqs; }, [&](const std::string& l) { lines.push_back(l); });
    CHECK((rd(s, 5) & 0x60) == 0x60);  // THR empty, transmitter empty
    for (char c : std::string("hello\nwor")) wr(s, 0, static_cast<uint8_t>(c));
    CHECK(irqs == 0);  // THRI not enabled
    s.flush();
  }
  close(p[1]);
  char buf[32] = {};
  CHECK(read(p[0], buf, sizeof buf) == 9);
  CHECK(std::string(buf) == "hello\nwor");
  close(p[0]);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "hello");
}

TEST_CASE("serial stops writing at its output limit, says so once, and still reports every line") {
  int p[2];
  REQUIRE(pipe(p) == 0);
  std::vector<std::string> lines;
  uint64_t out = 0, dropped = 0;
  {
    Serial s(p[1], {}, [&](const std::string& l) { lines.push_back(l); }, false, 10);
    for (int i = 0; i < 3; ++i)
      for (char c : std::string("0123456\n")) wr(s, 0, static_cast<uint8_t>(c));  // 8 bytes, flushed per line
    s.flush();
    out = s.bytes_out();
    dropped = s.bytes_dropped();
  }
  close(p[1]);
  std::string got;
  char buf[256];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  close(p[0]);
  CHECK(out == 24);
  CHECK(dropped == 14);
  // The first 10 bytes, then one note, then nothing of the third line.
  CHECK(got.rfind("0123456\n01", 0) == 0);
  CHECK(got.find("console output limit of 10 bytes reached") != std::string::npos);
  CHECK(got.find("console output limit", got.find("console output limit") + 1) == std::string::npos);
  CHECK(got.size() < 10 + 100);
  CHECK(lines == std::vector<std::string>{"0123456", "0123456", "0123456"});
}

TEST_CASE("serial raises THR-empty and data-ready interrupts the way Linux expects") {
  int irqs = 0;
  Serial s(-1, [&] { ++irqs; });
  wr(s, 1, 0x02);  // IER = THRI
  CHECK(irqs == 1);
  CHECK((rd(s, 2) & 0x0f) == 0x02);  // IIR: THR empty
  CHECK((rd(s, 2) & 0x0f) == 0x01);  // acknowledged by the read
  wr(s, 0, 'x');
  CHECK(irqs == 2);

  wr(s, 1, 0x01);  // IER = RDI only
  s.queue_input("ab");
  CHECK(irqs == 3);
  CHECK((rd(s, 5) & 0x01) == 0x01);  // data ready
  CHECK((rd(s, 2) & 0x0f) == 0x04);
  CHECK(rd(s, 0) == 'a');
  CHECK(rd(s, 0) == 'b');
  CHECK((rd(s, 5) & 0x01) == 0);
}

TEST_CASE("serial loopback and FIFO identification pass Linux's 16550A probe") {
  Serial s(-1, {});
  wr(s, 4, 0x1a);  // MCR: loop | RTS | OUT2
  CHECK((rd(s, 6) & 0xf0) == 0x90);
  wr(s, 4, 0x1f);
  CHECK((rd(s, 6) & 0xf0) == 0xf0);
  wr(s, 4, 0);
  wr(s, 2, 0x01);  // FCR: enable FIFO
  CHECK((rd(s, 2) >> 6) == 3);
  wr(s, 3, 0x80);  // DLAB
  wr(s, 0, 0x01);
  CHECK(rd(s, 0) == 0x01);  // divisor latch, not data
  wr(s, 3, 0x03);
  wr(s, 7, 0x5a);
  CHECK(rd(s, 7) == 0x5a);
}

TEST_CASE("a guest flooding its UART in loopback fills the 16-byte receive FIFO, then overruns") {
  Serial s(-1, {});
  wr(s, 4, 0x10);  // MCR: loopback
  for (int i = 0; i < 1 << 20; ++i) wr(s, 0, static_cast<uint8_t>(i));
  CHECK((rd(s, 5) & 0x03) == 0x03);  // data ready, overrun
  CHECK((rd(s, 5) & 0x02) == 0);     // reading LSR cleared the overrun
  for (int i = 0; i < 16; ++i) CHECK(rd(s, 0) == static_cast<uint8_t>(i));  // the first 16 bytes, kept
  CHECK((rd(s, 5) & 0x01) == 0);  // and nothing more
  CHECK(s.bytes_out() == 0);      // loopback bytes never leave
}

TEST_CASE("i8042 resets the machine only on command 0xfe at port 0x64") {
  int resets = 0;
  I8042 k([&] { ++resets; });
  uint8_t v = 0xfe;
  k.write(0x60, 0, {&v, 1});  // data port: ignored
  CHECK(resets == 0);
  v = 0xd1;
  k.write(0x60, 4, {&v, 1});
  CHECK(resets == 0);
  v = 0xfe;
  k.write(0x60, 4, {&v, 1});
  CHECK(resets == 1);
}
