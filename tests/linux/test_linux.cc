// End to end: the vicvmm binary boots the default guest (our kernel plus the
// vic-init initramfs, built by tools/guest) and runs commands in it.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/linux/http_helpers.h"
#include "tests/subprocess.h"

#include <thread>

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

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
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
  // ~7 KB written to the kernel console (the command's own stdout is the
  // stdio port) against a 1 KiB cap (every byte is a UART exit here, so
  // the flood is kept small enough for a quick test).
  Outcome o = run_vicvmm({"--console", log, "--console-limit", "1K", "--", "/bin/sh", "-c",
                          "i=0; while [ $i -lt 100 ]; do echo line-$i-0123456789012345678901234567890123456789"
                          "0123456789; i=$((i+1)); done > /dev/console; exit 4"});
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
  // No initramfs and no disk: the kernel finds no root file system and
  // panics; panic() itself rings the doorbell (panic-doorbell.patch).
  Outcome o = run_vicvmm({"--initrd", "none", "--", "/bin/true"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 126);
  CHECK(o.err.find("kernel panic: Kernel panic - not syncing: VFS: Unable to mount root fs") != std::string::npos);
}

TEST_CASE("a container that prints the panic text is not a kernel panic") {
  Outcome o = run_vicvmm({"--", "/bin/sh", "-c", "echo 'Kernel panic - not syncing: fake'; echo out; exit 3"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 3);
  CHECK(o.out.find("out\n") != std::string::npos);
  CHECK(o.err.find("kernel panic") == std::string::npos);
}

TEST_CASE("virtio-rng: the guest reads the host's randomness from /dev/hwrng; --no-rng leaves it out") {
  // 4 KiB twice through the device: the two reads differ (a stuck or
  // all-zero device reads the same twice). Only simple tools: busybox tr,
  // od and sort have been seen to segfault in guests on these hosts, with
  // /dev/urandom as well (not understood yet; see the closing note).
  Outcome o = run_vicvmm({"--stats", "--", "/bin/sh", "-c",
                          "head -c 4096 /dev/hwrng > /tmp/a && head -c 4096 /dev/hwrng > /tmp/b && wc -c < /tmp/a && "
                          "{ cmp -s /tmp/a /tmp/b || echo differ; } && cat /sys/class/misc/hw_random/rng_current"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  auto lines = split_lines(o.out);
  REQUIRE(lines.size() >= 3);
  CHECK(lines[lines.size() - 3] == "4096");
  CHECK(lines[lines.size() - 2] == "differ");
  CHECK(lines[lines.size() - 1] == "virtio_rng.0");
  // Slot 0 is the stdio console, slot 1 the rng.
  CHECK(o.err.find("virtio_mmio.device=4K@0xd0001000:6") != std::string::npos);
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

namespace {
std::string disk_file(const std::string& name, size_t size, const std::string& at_4096) {
  std::string path = "/tmp/vicvmm-linux-" + std::to_string(getpid()) + "-" + name;
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
  data.replace(4096, at_4096.size(), at_4096);
  std::ofstream(path, std::ios::binary) << data;
  return path;
}
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
}  // namespace

TEST_CASE("virtio-blk: the guest reads a disk's content, writes reach the host file, a read-only disk refuses writes") {
  auto rw = disk_file("rw.img", 4 << 20, "first-disk-block-1");
  auto ro = disk_file("ro.img", 1 << 20, "second-disk-ro");
  std::string ro_before = read_file(ro);
  // The host's checksum of the first MiB, as the guest reads it before writing.
  Outcome md5 = run_process({"/bin/sh", "-c", "head -c 1048576 '" + rw + "' | md5sum"});
  REQUIRE(md5.status == 0);
  Outcome o = run_vicvmm({"--stats", "--disk", rw, "--disk", ro + ",ro", "--", "/bin/sh", "-c",
                          "dd if=/dev/vda bs=4096 skip=1 count=1 2>/dev/null | head -c 18; echo; "
                          "dd if=/dev/vdb bs=4096 skip=1 count=1 2>/dev/null | head -c 14; echo; "
                          "cat /sys/block/vda/size /sys/block/vda/ro /sys/block/vdb/size /sys/block/vdb/ro; "
                          "dd if=/dev/vda bs=65536 count=16 2>/dev/null | md5sum; "
                          "echo -n written-by-the-guest | dd of=/dev/vda bs=4096 seek=3 conv=notrunc 2>/dev/null; "
                          "echo rw=$?; echo -n nope | dd of=/dev/vdb bs=4096 seek=3 conv=notrunc 2>/dev/null; "
                          "echo ro=$?"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  auto lines = split_lines(o.out);
  REQUIRE(lines.size() >= 9);
  size_t b = lines.size() - 9;
  CHECK(lines[b + 0] == "first-disk-block-1");
  CHECK(lines[b + 1] == "second-disk-ro");
  CHECK(lines[b + 2] == "8192");  // 512-byte sectors
  CHECK(lines[b + 3] == "0");
  CHECK(lines[b + 4] == "2048");
  CHECK(lines[b + 5] == "1");
  CHECK(lines[b + 6] == split_lines(md5.out).at(0));
  CHECK(lines[b + 7] == "rw=0");
  CHECK(lines[b + 8] == "ro=1");
  std::string after = read_file(rw);
  CHECK(after.substr(3 * 4096, 20) == "written-by-the-guest");
  CHECK(read_file(ro) == ro_before);
  // Two virtio-blk transports in --stats, neither needing a reset.
  size_t first = o.err.find("virtio-blk: ");
  REQUIRE(first != std::string::npos);
  CHECK(o.err.find("virtio-blk: ", first + 1) != std::string::npos);
  CHECK(o.err.find("resets needed") != std::string::npos);
  CHECK(o.err.find(" 1 resets needed") == std::string::npos);
  unlink(rw.c_str());
  unlink(ro.c_str());
}

TEST_CASE("stdio channel: piped stdin reaches the command and ends in EOF; a file works too") {
  // Through a pipe, as a user types it.
  Outcome piped = run_process({"/bin/sh", "-c",
                               "printf 'echo hi; exit 7\\n' | '" + vicvmm_bin() +
                                   "' run --timeout 120 --console none -- /bin/sh"});
  CAPTURE(piped.out, piped.err);
  CHECK(piped.status == 7);
  CHECK(piped.out == "hi\n");

  // From a file: cat must see every byte, then EOF (else it never exits).
  std::string in_path = "/tmp/vicvmm-linux-" + std::to_string(getpid()) + "-stdin";
  std::string in_data;
  for (int i = 0; i < 20000; ++i) in_data += static_cast<char>(i % 251);
  std::ofstream(in_path, std::ios::binary) << in_data;
  Outcome o = run_process({vicvmm_bin(), "run", "--timeout", "120", "--console", "none", "--", "/bin/sh", "-c",
                           "cat > /tmp/in; wc -c < /tmp/in; md5sum < /tmp/in"},
                          {}, in_path);
  Outcome host_md5 = run_process({"/bin/sh", "-c", "md5sum < '" + in_path + "'"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out == "20000\n" + host_md5.out);
  unlink(in_path.c_str());
}

TEST_CASE("stdio channel: 1 MiB of binary output in 10,000-byte lines arrives byte-exact, stderr apart") {
  // 105 lines of 9,999 bytes, every byte value but '\\n' (made with shell
  // builtins and cat: busybox tr/od/sort have segfaulted in guests here),
  // then the size and checksum on stderr.
  Outcome o = run_vicvmm({"--console", "none", "--", "/bin/sh", "-c",
                          "i=0; while [ $i -lt 256 ]; do if [ $i -ne 10 ]; then d=$(( (i/64)*100 + ((i/8)%8)*10 + i%8 )); printf \"\\\\$d\"; fi; i=$((i+1)); done > /tmp/p; cat /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p > /tmp/p8; cat /tmp/p8 /tmp/p8 /tmp/p8 /tmp/p8 /tmp/p8 > /tmp/q; head -c 9999 /tmp/q > /tmp/l1; echo >> /tmp/l1; for n in 2 4 8 16 32 64; do h=$((n/2)); cat /tmp/l$h /tmp/l$h > /tmp/l$n; done; cat /tmp/l64 /tmp/l32 /tmp/l8 /tmp/l1 > /tmp/b; cat /tmp/b; wc -c < /tmp/b >&2; md5sum < /tmp/b >&2; echo to-stderr >&2"});
  CAPTURE(o.err);
  CHECK(o.status == 0);
  REQUIRE(o.out.size() == 105 * 10000);
  for (size_t line = 0; line < 105; ++line) {
    CAPTURE(line);
    REQUIRE(o.out.find('\n', line * 10000) == line * 10000 + 9999);
  }
  for (int v = 0; v < 256; ++v)  // binary: every byte value but newline, in each line
    if (v != '\n') CHECK(o.out.substr(0, 9999).find(static_cast<char>(v)) != std::string::npos);
  // The host's checksum of what arrived is the one the guest printed.
  std::string path = "/tmp/vicvmm-linux-" + std::to_string(getpid()) + "-binary";
  std::ofstream(path, std::ios::binary) << o.out;
  Outcome md5 = run_process({"/bin/sh", "-c", "md5sum < '" + path + "'"});
  unlink(path.c_str());
  CHECK(o.err == "1050000\n" + md5.out + "to-stderr\n");
}

TEST_CASE("virtio-net: the guest reaches a server on host loopback through slirp, with its fixed address") {
  HostHttpServer server("hello-from-host");
  REQUIRE(server.port() != 0);
  Outcome o = run_vicvmm({"--net", "--stats", "--console", "none", "--", "/bin/sh", "-c",
                          "wget -q -O - http://10.0.2.2:" + std::to_string(server.port()) +
                              "/; echo; echo rc=$?; cat /etc/resolv.conf /sys/class/net/eth0/address"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out == "hello-from-host\nrc=0\nnameserver 10.0.2.3\n52:54:00:12:34:56\n");
  CHECK(server.requests() == 1);
  CHECK(o.err.find("virtio-net: ") != std::string::npos);
}

// Serves /tmp/www with busybox httpd until one request was answered (up to
// 60 s), then prints httpd's log.
const std::string kServeOnce =
    "mkdir -p /tmp/www; echo served-by-the-guest > /tmp/www/index.html; "
    "httpd -f -vv -p 80 -h /tmp/www 2>/tmp/log & i=0; "
    "while ! grep -q response:200 /tmp/log 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done; "
    "sleep 1; cat /tmp/log";

TEST_CASE("virtio-net: a published port (-p HOST:GUEST) reaches busybox httpd in the guest") {
  const uint16_t port = free_port();
  Outcome o;
  std::thread vm([&] {
    // busybox httpd serves until it logged one answered request; then the
    // command (and the VM) ends.
    o = run_vicvmm({"-p", std::to_string(port) + ":80", "--console", "none", "--", "/bin/sh", "-c", kServeOnce});
  });
  std::string body = http_get_retry(port, std::chrono::seconds(100));
  vm.join();
  CAPTURE(o.out, o.err);
  CHECK(body == "served-by-the-guest\n");
  CHECK(o.status == 0);
  CHECK(o.out.find("response:200") != std::string::npos);  // httpd's log of our request
}

TEST_CASE("-p: bad specifications are refused with one error line") {
  for (const std::string bad : {"80", "x:80", "0:80", "70000:80", "8080:80/sctp", "300.1.1.1:8080:80", "8081-8080:80",
                                "8080-8081:80"}) {
    CAPTURE(bad);
    Outcome o = run_process({vicvmm_bin(), "run", "-p", bad, "--", "/bin/true"});
    CHECK(o.status == 125);
    CHECK(o.err.rfind("vicvmm: error: -p " + bad, 0) == 0);
  }
}
