// End to end: the vicvmm binary boots the default guest (our kernel plus the
// vic-init initramfs, built by tools/guest) and runs commands in it.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/subprocess.h"

using namespace vicvmm::test;

namespace {
// A generous bound: boot takes ~5-10 s here; a hung guest must not hang CI.
const std::vector<std::string> kRun = {"run", "--timeout", "120"};

Outcome run_vicvmm(std::vector<std::string> args) {
  std::vector<std::string> argv{vicvmm_bin()};
  argv.insert(argv.end(), kRun.begin(), kRun.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}
}  // namespace

TEST_CASE("echo output reaches the host and exit status 0 passes through") {
  Outcome o = run_vicvmm({"--", "/bin/echo", "hello-from-the-guest"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out.find("hello-from-the-guest\n") != std::string::npos);
}

TEST_CASE("a non-zero exit status passes through, with output") {
  Outcome o = run_vicvmm({"--stats", "--", "/bin/sh", "-c", "echo hi; exit 3"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 3);
  CHECK(o.out.find("hi\n") != std::string::npos);
  // --stats names the host kind and the agent's readiness time.
  CHECK(o.err.find("host: ") != std::string::npos);
  CHECK(o.err.find("guest init (agent ready)") != std::string::npos);
}

TEST_CASE("environment, hostname and arguments with spaces reach the command") {
  Outcome o = run_vicvmm({"--env", "GREETING=two words", "--hostname", "box-7", "--", "/bin/sh", "-c",
                      "echo \"[$GREETING] [$(hostname)] [$0] [$(cat /proc/sys/kernel/hostname)]\"", "arg zero"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  // The last field comes through /proc/sys, which the container can use.
  CHECK(o.out.find("[two words] [box-7] [arg zero] [box-7]") != std::string::npos);
}

TEST_CASE("a command that cannot be found exits 127") {
  Outcome o = run_vicvmm({"--", "/no/such/program"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 127);
}

TEST_CASE("a busybox applet with no /bin link runs by its bare name; a typo exits 127") {
  // The initramfs links only a few applets (tools/build-rootfs): vic-init
  // hands other bare names to busybox, and busybox's sh finds applets itself.
  Outcome o = run_vicvmm({"--", "awk", "BEGIN { print 6 * 7 }"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out.find("42\n") != std::string::npos);

  Outcome in_sh = run_vicvmm({"--", "/bin/sh", "-c", "seq 3 | wc -l"});
  CAPTURE(in_sh.out, in_sh.err);
  CHECK(in_sh.status == 0);
  CHECK(in_sh.out.find("3\n") != std::string::npos);

  Outcome typo = run_vicvmm({"--", "no-such-command"});
  CAPTURE(typo.out, typo.err);
  CHECK(typo.status == 127);
}

TEST_CASE("a guest flooding a console file is cut at --console-limit; the command still completes") {
  char dir[] = "/tmp/vicvmm-console-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string log = std::string(dir) + "/console.log";
  // ~7 KB of output against a 1 KiB cap (every byte is a UART exit here, so
  // the flood is kept small enough for a quick test).
  Outcome o = run_vicvmm({"--console", log, "--console-limit", "1K", "--", "/bin/sh", "-c",
                          "i=0; while [ $i -lt 100 ]; do echo line-$i-0123456789012345678901234567890123456789"
                          "0123456789; i=$((i+1)); done; exit 4"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 4);
  std::ifstream f(log);
  std::stringstream text;
  text << f.rdbuf();
  std::string got = text.str();
  struct stat st {};
  REQUIRE(stat(log.c_str(), &st) == 0);
  CHECK(st.st_size < 1024 + 200);
  CHECK(got.find("console output limit of 1024 bytes reached") != std::string::npos);
  CHECK(got.find("line-99-") == std::string::npos);
  std::remove(log.c_str());
  rmdir(dir);
}

TEST_CASE("the I/O-port doorbell works as well as the MMIO one") {
  Outcome o = run_vicvmm({"--port-doorbell", "--", "/bin/sh", "-c", "exit 5"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 5);
}

TEST_CASE("a kernel panic is reported as such") {
  // No initramfs: our kernel has no block devices, so its root stays the
  // empty built-in rootfs, which has no init, and it panics.
  Outcome o = run_vicvmm({"--initrd", "none", "--", "/bin/true"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 126);
  CHECK(o.err.find("kernel panic") != std::string::npos);
  CHECK(o.err.find("No working init found") != std::string::npos);
}

TEST_CASE("virtio-rng: the guest reads the host's randomness from /dev/hwrng; --no-rng leaves it out") {
  // 4 KiB through the device; od -v prints every 16-byte line, which are
  // all distinct for random data (a stuck or zero device repeats lines).
  Outcome o = run_vicvmm({"--stats", "--", "/bin/sh", "-c",
                          "head -c 4096 /dev/hwrng > /tmp/r && wc -c < /tmp/r && od -An -tx1 -v /tmp/r | sort -u | wc -l "
                          "&& cat /sys/class/misc/hw_random/rng_current"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out.find("4096\n256\nvirtio_rng.0\n") != std::string::npos);
  CHECK(o.err.find("virtio_mmio.device=4K@0xd0000000:5") != std::string::npos);
  auto at = o.err.find("virtio-rng: ");
  REQUIRE(at != std::string::npos);
  CHECK(o.err.find(" 0 resets needed", at) != std::string::npos);
  CHECK(o.err.find("virtio-rng: 0 notifies", at) == std::string::npos);

  Outcome none = run_vicvmm({"--no-rng", "--", "/bin/sh", "-c", "head -c 1 /dev/hwrng >/dev/null 2>&1; echo rc=$?"});
  CAPTURE(none.out, none.err);
  CHECK(none.status == 0);
  CHECK(none.out.find("rc=0") == std::string::npos);
  CHECK(none.out.find("rc=") != std::string::npos);
}
