// virtio-blk over a real temporary image file, through the transport and a
// real io_uring: requests are kicked, submitted, and completed when the
// completion fd fires (what the I/O thread does in a VM).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "tests/unit/virtio_driver.h"
#include "vmm/virtio/block.h"

using namespace vicvmm;
using namespace vicvmm::virtio;
using vicvmm::test::FakeDriver;
using vicvmm::test::MmioDriver;

namespace {

constexpr uint64_t kMem = 1 << 20;
constexpr uint64_t kHdr = 0x10000, kData = 0x11000, kStatus = 0x20000;
constexpr uint64_t kDiskBytes = 64 * 1024;

struct TempImage {
  std::string path;
  explicit TempImage(uint64_t size = kDiskBytes, uint8_t fill = 0) {
    char tmpl[] = "/tmp/vicvmm-blk-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    path = tmpl;
    std::string bytes(size, static_cast<char>(fill));
    for (uint64_t s = 0; s < size / 512; ++s) bytes[s * 512] = static_cast<char>(s);  // sector number in byte 0
    REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    close(fd);
  }
  ~TempImage() { unlink(path.c_str()); }
  std::string read_all() const {
    std::string s(kDiskBytes, '\0');
    int fd = open(path.c_str(), O_RDONLY);
    REQUIRE(pread(fd, s.data(), s.size(), 0) == static_cast<ssize_t>(s.size()));
    close(fd);
    return s;
  }
};

struct BlkRig {
  GuestMemory mem = *GuestMemory::create(kMem, Backing::Anonymous);
  std::shared_ptr<Block> blk;
  std::unique_ptr<MmioTransport> t;
  FakeDriver drv{mem};
  int irqs = 0;

  explicit BlkRig(const BlockOptions& o) {
    auto b = Block::open(o);
    INFO((b ? std::string() : b.error().message));
    REQUIRE(b);
    blk = *b;
    t = std::make_unique<MmioTransport>(blk, mem, [this] { ++irqs; });
    REQUIRE(MmioDriver(*t).bring_up(drv.layout(), kFeatureVersion1 | kFeatureIndirectDesc));
  }
  // One request: header, optional data (readable for OUT, writable for IN),
  // status byte. Waits for the completion; returns the status byte.
  uint8_t request(uint32_t type, uint64_t sector, uint32_t data_len, bool data_writable) {
    struct {
      uint32_t type, reserved;
      uint64_t sector;
    } h{type, 0, sector};
    (void)mem.write_obj(kHdr, h);
    (void)mem.write_obj<uint8_t>(kStatus, 0xff);
    uint16_t next = 1;
    drv.set_desc(0, kHdr, 16, kDescNext, next);
    if (data_len) {
      drv.set_desc(next, kData, data_len, kDescNext | (data_writable ? kDescWrite : 0), next + 1);
      ++next;
    }
    drv.set_desc(next, kStatus, 1, kDescWrite);
    uint16_t used_before = drv.used_idx();
    drv.offer(0);
    uint8_t kick[4] = {0, 0, 0, 0};
    t->write(0, mmio::kRegQueueNotify, kick);
    for (int i = 0; i < 100 && drv.used_idx() == used_before; ++i) {
      pollfd p{blk->completion_fd(), POLLIN, 0};
      if (poll(&p, 1, 100) > 0) t->on_completions();
    }
    REQUIRE(drv.used_idx() == static_cast<uint16_t>(used_before + 1));
    return *mem.read_obj<uint8_t>(kStatus);
  }
};

constexpr uint32_t kIn = 0, kOut = 1, kFlush = 4, kGetId = 8, kDiscard = 11;

}  // namespace

TEST_CASE("virtio-blk: reads the image, writes reach the file, flush and GET_ID") {
  TempImage img;
  BlkRig r({img.path, false, "disk-one"});
  CHECK(r.blk->capacity_bytes() == kDiskBytes);
  uint64_t capacity = 0;
  uint8_t cfg[8];
  r.t->read(0, mmio::kRegConfig, cfg);
  std::memcpy(&capacity, cfg, 8);
  CHECK(capacity == kDiskBytes / 512);

  // Sectors 3-4 into guest memory.
  REQUIRE(r.request(kIn, 3, 1024, true) == 0);
  CHECK(*r.mem.read_obj<uint8_t>(kData) == 3);
  CHECK(*r.mem.read_obj<uint8_t>(kData + 512) == 4);
  CHECK(r.drv.used(0).len == 1025);  // data + status

  // Guest bytes onto sector 10.
  (void)r.mem.fill(kData, 0x5a, 512);
  REQUIRE(r.request(kOut, 10, 512, false) == 0);
  REQUIRE(r.request(kFlush, 0, 0, false) == 0);
  std::string file = img.read_all();
  CHECK(file[10 * 512] == 0x5a);
  CHECK(file[10 * 512 + 511] == 0x5a);
  CHECK(file[11 * 512] == 11);  // the next sector is untouched

  REQUIRE(r.request(kGetId, 0, 20, true) == 0);
  char id[21] = {};
  REQUIRE(r.mem.read(kData, {reinterpret_cast<uint8_t*>(id), 20}));
  CHECK(std::string(id) == "disk-one");
  CHECK(r.blk->in_flight() == 0);
  CHECK(r.irqs >= 1);
}

TEST_CASE("virtio-blk: out-of-range, unaligned and unknown requests fail without touching the file") {
  TempImage img;
  BlkRig r({img.path, false, ""});
  CHECK(r.request(kIn, kDiskBytes / 512, 512, true) == 1);      // past the end: IOERR
  CHECK(r.request(kIn, ~0ull / 512, 512, true) == 1);           // sector * 512 overflows
  CHECK(r.request(kOut, 0, 100, false) == 1);                   // not whole sectors
  CHECK(r.request(99, 0, 0, false) == 2);                       // UNSUPP
  CHECK((r.t->status() & kStatusNeedsReset) == 0);              // bad requests are not queue faults
  CHECK(img.read_all() == TempImage().read_all());
}

TEST_CASE("virtio-blk: DISCARD punches a hole that reads back as zeros") {
  TempImage img(kDiskBytes, 0x77);
  BlkRig r({img.path, false, ""});
  struct {
    uint64_t sector;
    uint32_t num, flags;
  } range{8, 8, 0};
  (void)r.mem.write_obj(kData, range);
  REQUIRE(r.request(kDiscard, 0, 16, false) == 0);
  std::string file = img.read_all();
  CHECK(file.substr(8 * 512, 4096) == std::string(4096, '\0'));
  CHECK(file[16 * 512 + 1] == 0x77);
}

TEST_CASE("virtio-blk: a read-only disk offers RO and refuses writes") {
  TempImage img;
  BlkRig r({img.path, true, ""});
  CHECK((r.blk->features() & (1ull << 5)) != 0);
  (void)r.mem.fill(kData, 0x11, 512);
  CHECK(r.request(kOut, 0, 512, false) == 1);
  CHECK(r.request(kDiscard, 0, 0, false) == 1);
  CHECK(r.request(kIn, 1, 512, true) == 0);
  CHECK(img.read_all() == TempImage().read_all());
}

TEST_CASE("virtio-blk: a read-write image is never opened twice; bad images are refused") {
  TempImage img;
  auto first = Block::open({img.path, false, ""});
  REQUIRE(first);
  auto second = Block::open({img.path, false, ""});
  REQUIRE_FALSE(second);
  CHECK(second.error().message.find("in use by another VM") != std::string::npos);
  CHECK_FALSE(Block::open({img.path, true, ""}));  // not even read-only while a writer has it
  first->reset();
  first = Block::open({"/no/such/image", false, ""});
  CHECK_FALSE(first);

  TempImage odd(1000);
  auto o = Block::open({odd.path, false, ""});
  REQUIRE_FALSE(o);
  CHECK(o.error().message.find("multiple of 512") != std::string::npos);

  std::string fifo = img.path + ".fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  auto f = Block::open({fifo, true, ""});  // must not hang
  unlink(fifo.c_str());
  REQUIRE_FALSE(f);
  CHECK(f.error().message.find("not a regular file") != std::string::npos);
}

TEST_CASE("virtio-blk: --disk option parsing") {
  auto a = parse_disk_option("/tmp/x.img,ro");
  REQUIRE(a);
  CHECK(a->path == "/tmp/x.img");
  CHECK(a->read_only);
  CHECK_FALSE(parse_disk_option("/tmp/x.img")->read_only);
  CHECK_FALSE(parse_disk_option(",ro"));
  auto bad = parse_disk_option("/tmp/x.img,fast");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("'fast'") != std::string::npos);
}
