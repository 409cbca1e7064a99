// Guest memory round trip for each backing: the host places words, the guest
// reads and transforms them (guest/tests/memtest.S), the host checks the
// results in guest memory and, for file-backed RAM, in the file.
#include <sys/mman.h>
#include <unistd.h>

#include "tests/kvm/harness.h"
#include "vmm/unique_fd.h"

using namespace vicvmm;
using namespace vicvmm::test;

namespace {

constexpr uint64_t kX0 = 0x0123'4567'89ab'cdefull;  // at TG_DATA_GPA; low byte is the exit status
constexpr uint64_t kX1 = 0xfedc'ba98'7654'3210ull;  // near the top of RAM (the guest's RSI)
constexpr uint64_t kHigh = kTinyMemSize - 2 * 0x1000;
constexpr uint64_t kSentinel = 0x5555'aaaa'5555'aaaaull;  // file data under the output words

uint64_t file_u64(int fd, uint64_t off) {
  uint64_t v = 0;
  REQUIRE(pread(fd, &v, sizeof v, static_cast<off_t>(off)) == static_cast<ssize_t>(sizeof v));
  return v;
}

void file_put(int fd, uint64_t off, uint64_t v) {
  REQUIRE(pwrite(fd, &v, sizeof v, static_cast<off_t>(off)) == static_cast<ssize_t>(sizeof v));
}

void check_guest_results(const Machine& m) {
  CHECK(read_u64(m, TG_DATA_GPA) == ~kX0);
  CHECK(read_u64(m, TG_DATA_GPA + TG_DATA_OUT_OFFSET) == 3 * kX0 + 1);
  CHECK(read_u64(m, kHigh) == ~kX1);
  CHECK(read_u64(m, kHigh + TG_DATA_OUT_OFFSET) == 3 * kX1 + 1);
}

}  // namespace

TEST_CASE("guest memory round trip: anonymous and shared memfd backings", "[kvm][memory]") {
  const Backing backing = GENERATE(Backing::Anonymous, Backing::SharedMemfd);
  CAPTURE(backing_name(backing));
  MachineConfig cfg = tiny_config();
  cfg.backing = backing;
  auto m = boot_guest(cfg, "memtest", kHigh);
  REQUIRE(m->memory().backing() == backing);
  REQUIRE_OK(m->memory().write_obj(TG_DATA_GPA, kX0));
  REQUIRE_OK(m->memory().write_obj(kHigh, kX1));

  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::CommandExited);
  CHECK(run.stop.exit_status == static_cast<int>(kX0 & 0xff));  // the guest saw kX0
  check_guest_results(*m);

  if (backing == Backing::SharedMemfd) {
    // MAP_SHARED: another view of the memfd (a snapshot reader) sees the guest's writes.
    int fd = m->memory().memfd();
    REQUIRE(fd >= 0);
    CHECK(file_u64(fd, TG_DATA_GPA) == ~kX0);
    CHECK(file_u64(fd, TG_DATA_GPA + TG_DATA_OUT_OFFSET) == 3 * kX0 + 1);
    CHECK(file_u64(fd, kHigh + TG_DATA_OUT_OFFSET) == 3 * kX1 + 1);
  } else {
    CHECK(m->memory().memfd() < 0);
  }
}

TEST_CASE("guest memory round trip: private file backing is copy-on-write", "[kvm][memory]") {
  UniqueFd file(memfd_create("kvm-test-private", MFD_CLOEXEC));
  REQUIRE(file.valid());
  REQUIRE(ftruncate(file.get(), static_cast<off_t>(kTinyMemSize)) == 0);
  // The guest's inputs exist only in the file; the output words hold a sentinel.
  file_put(file.get(), TG_DATA_GPA, kX0);
  file_put(file.get(), kHigh, kX1);
  file_put(file.get(), TG_DATA_GPA + TG_DATA_OUT_OFFSET, kSentinel);
  file_put(file.get(), kHigh + TG_DATA_OUT_OFFSET, kSentinel);

  MachineConfig cfg = tiny_config();
  cfg.backing = Backing::PrivateFile;
  cfg.backing_fd = file.get();
  auto m = boot_guest(cfg, "memtest", kHigh);
  REQUIRE(m->memory().backing() == Backing::PrivateFile);
  // The host sees the file's data through the private mapping before the run.
  CHECK(read_u64(*m, TG_DATA_GPA + TG_DATA_OUT_OFFSET) == kSentinel);

  auto run = run_guest(*m);
  CHECK(run.stop.reason == StopReason::CommandExited);
  CHECK(run.stop.exit_status == static_cast<int>(kX0 & 0xff));  // the guest read the file's kX0
  check_guest_results(*m);

  // Nothing written through the mapping, by the guest or by the host's boot
  // writes (image, page tables, GDT), reached the file.
  CHECK(file_u64(file.get(), TG_DATA_GPA) == kX0);
  CHECK(file_u64(file.get(), kHigh) == kX1);
  CHECK(file_u64(file.get(), TG_DATA_GPA + TG_DATA_OUT_OFFSET) == kSentinel);
  CHECK(file_u64(file.get(), kHigh + TG_DATA_OUT_OFFSET) == kSentinel);
  CHECK(file_u64(file.get(), TG_LOAD_GPA) == 0);
  CHECK(file_u64(file.get(), TG_STACK_TOP - 8) == 0);
}
