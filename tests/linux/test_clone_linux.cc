// The clone engine on the default Linux guest: one template booted through
// the library (shared by the library tests), clones with their own hostname
// and RNG seed, reset and rerun, dirty-page accounting; then the whole
// template / fork / snapshot workflow through the vicvmm binary.
//
// A Linux template boot takes ~10-60 s on the nested PVM hosts (HOST.md):
// this file boots exactly two (one here, one through `vicvmm template create`).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "clone/clone.h"
#include "clone/template.h"
#include "tests/linux/http_helpers.h"
#include "tests/subprocess.h"
#include "tools/vicvmm/options.h"
#include "vmm/mapped_file.h"

using namespace vicvmm;
using namespace vicvmm::test;

namespace {

constexpr uint64_t kTemplateMem = 128ull << 20;
constexpr auto kCloneTimeout = std::chrono::seconds(120);
constexpr uint64_t kPage = 4096;

// The one library-booted Linux template, booted on first use.
struct LinuxTemplate {
  std::optional<Kvm> kvm;
  std::shared_ptr<const Template> tmpl;
  std::string error;  // why there is no template
  double boot_s = 0;
};

std::string tail_of_file(const std::string& path, size_t max = 3000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

// The template's read-only disk: a pattern, with a marker in block 100.
struct TemplateDisk {
  std::string path = "/tmp/vicvmm-clone-linux-disk-" + std::to_string(getpid()) + ".img";
  TemplateDisk() {
    std::string data(1 << 20, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
    data.replace(100 * 4096, 12, "disk-at-100!");
    std::ofstream(path, std::ios::binary) << data;
  }
  ~TemplateDisk() { unlink(path.c_str()); }
};
const TemplateDisk& template_disk() {
  static const TemplateDisk d;
  return d;
}

LinuxTemplate boot_linux_template() {
  LinuxTemplate t;
  auto kvm = Kvm::open();
  if (!kvm) {
    t.error = kvm.error().message;
    return t;
  }
  t.kvm.emplace(std::move(*kvm));
  auto kernel = MappedFile::open(cli::default_kernel(), "kernel");
  auto initrd = MappedFile::open(cli::default_initrd(), "initrd");
  if (!kernel || !initrd) {
    t.error = (kernel ? initrd.error() : kernel.error()).message + " (build the default guest: tools/guest)";
    return t;
  }
  // The boot log goes to a file, shown if the boot fails.
  const std::string log = "/tmp/vicvmm-clone-linux-boot-" + std::to_string(getpid()) + ".log";
  UniqueFd console(open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  TemplateSpec spec;
  spec.kernel = kernel->bytes();
  spec.initrd = initrd->bytes();
  spec.mem_size = kTemplateMem;
  spec.console_fd = console.get();
  spec.timeout = std::chrono::minutes(5);
  spec.devices = {{virtio::kDeviceConsole, {}, false, {}},
                  {virtio::kDeviceRng, {}, false, {}},
                  {virtio::kDeviceBlock, template_disk().path, true, {}},
                  {virtio::kDeviceNet, {}, false, {}}};
  auto t0 = std::chrono::steady_clock::now();
  auto tmpl = Template::boot(*t.kvm, spec);
  t.boot_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!tmpl) {
    t.error = tmpl.error().message + "\nboot log tail:\n" + tail_of_file(log);
  } else {
    t.tmpl = std::move(*tmpl);
    std::printf("[linux-clone] template booted and captured in %.1f s\n", t.boot_s);
  }
  unlink(log.c_str());
  return t;
}

const LinuxTemplate& linux_template() {
  static const LinuxTemplate t = boot_linux_template();
  return t;
}

#define REQUIRE_TEMPLATE()                   \
  const LinuxTemplate& lt = linux_template(); \
  INFO(lt.error);                            \
  REQUIRE(lt.tmpl != nullptr)

#define REQUIRE_OK(expr)                                           \
  do {                                                             \
    auto&& vic_ok_r_ = (expr);                                     \
    INFO((vic_ok_r_ ? std::string() : vic_ok_r_.error().message)); \
    REQUIRE(vic_ok_r_.has_value());                                \
  } while (0)

// The guest's console is a tty with ONLCR: its lines end in "\r\n", and the
// VMM's line callback keeps the '\r'.
std::string strip_cr(std::string s) {
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> v;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) v.push_back(strip_cr(l));
  return v;
}

bool has_line(const std::vector<std::string>& lines, const std::string& l) {
  return std::find(lines.begin(), lines.end(), l) != lines.end();
}

// Console lines of every clone, by clone id.
struct Consoles {
  std::mutex mu;
  std::map<uint32_t, std::vector<std::string>> lines;

  std::vector<std::string> of(uint32_t id) {
    std::lock_guard lock(mu);
    return lines[id];
  }
  void clear(uint32_t id) {
    std::lock_guard lock(mu);
    lines.erase(id);
  }
};

CloneOptions options_for(Consoles& consoles) {
  CloneOptions o;
  o.timeout = kCloneTimeout;
  o.on_console_line = [&consoles](uint32_t id, const std::string& line) {
    std::lock_guard lock(consoles.mu);
    consoles.lines[id].push_back(strip_cr(line));
  };
  return o;
}

// Prints the hostname, then 128 random bits from the guest kernel's RNG as a
// uuid: /proc/sys/kernel/random/uuid, or (our guest kernel has no
// CONFIG_PROC_SYSCTL, so no /proc/sys) 16 bytes of /dev/urandom in hex.
const std::vector<std::string> kHostnameUuid = {
    "/bin/sh", "-c",
    "hostname; cat /proc/sys/kernel/random/uuid 2>/dev/null || od -An -N16 -tx1 /dev/urandom | tr -d ' '; "
    "exit 7"};

AgentRequest request(uint32_t id, const std::string& hostname, const std::vector<std::string>& argv) {
  AgentRequest r;
  r.argv = argv;
  r.env = cli::default_env({});
  r.hostname = hostname;
  r.clone_id = id;
  // Fresh randomness, as `vicvmm fork` does; distinct per clone in any case.
  if (getrandom(r.seed.data(), sizeof r.seed, 0) != static_cast<ssize_t>(sizeof r.seed)) r.seed = {id, ~uint64_t{id}, 1, 2};
  r.seed[3] ^= id;
  return r;
}

bool looks_like_uuid(const std::string& s) {
  if (s.size() == 32)  // the /dev/urandom form
    return std::all_of(s.begin(), s.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); });
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& l : v) s += l + "\n";
  return s;
}

double ms(uint64_t from, uint64_t to) { return from && to >= from ? static_cast<double>(to - from) / 1e6 : -1; }

void print_times(const char* what, const Clone& c) {
  CloneTimes t = c.times();
  std::printf("[linux-clone] %s: start->first KVM_RUN %.3f ms, ->personality read %.3f ms, ->exit %.1f ms\n", what,
              ms(t.requested, t.first_run), ms(t.requested, t.personality), ms(t.requested, t.stopped));
}

std::string pages_str(const std::vector<uint64_t>& pages) {
  std::string s;
  for (uint64_t p : pages) s += fmt::format("{:#x} ", p * kPage);
  return s;
}

// Guest pages a Linux clone owns before it runs a single instruction: the
// mailbox (Clone::start) and the guest's kvm-clock areas, which KVM itself
// writes while the template state is restored: restoring
// MSR_KVM_WALL_CLOCK_NEW writes the wall clock at the GPA it holds, and the
// kvmclock update after KVM_SET_CLOCK / MSR_KVM_SYSTEM_TIME_NEW rewrites the
// vCPU's pvclock page. Both go through KVM's dirty log.
std::vector<uint64_t> pages_written_at_start(const Template& t) {
  constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00, kMsrKvmSystemTimeNew = 0x4b564d01;
  std::set<uint64_t> pages = {VIC_MAILBOX_GPA / kPage};
  for (const auto& m : t.state().vcpu.msrs) {
    if (m.index == kMsrKvmWallClockNew && m.data != 0) pages.insert(m.data / kPage);
    if (m.index == kMsrKvmSystemTimeNew && (m.data & 1)) pages.insert((m.data & ~1ull) / kPage);
  }
  return {pages.begin(), pages.end()};
}

}  // namespace

TEST_CASE("linux clones: each has its own hostname, exit status and reseeded RNG", "[linux][clone]") {
  REQUIRE_TEMPLATE();
  Consoles consoles;
  std::vector<std::string> uuids;
  for (uint32_t id = 1; id <= 3; ++id) {
    CAPTURE(id);
    auto c = Clone::create(*lt.kvm, lt.tmpl, options_for(consoles));
    REQUIRE_OK(c);
    const std::string hostname = "linux-clone-" + std::to_string(id);
    REQUIRE_OK((*c)->start(request(id, hostname, kHostnameUuid)));
    auto stop = (*c)->run();
    REQUIRE_OK(stop);
    auto out = consoles.of(id);
    CAPTURE(stop->reason, stop->detail, join(out));
    CHECK(stop->reason == StopReason::CommandExited);
    CHECK(stop->exit_status == 7);
    REQUIRE(out.size() >= 2);
    CHECK(has_line(out, hostname));
    auto uuid = std::find_if(out.begin(), out.end(), looks_like_uuid);
    REQUIRE(uuid != out.end());
    uuids.push_back(*uuid);
    print_times(hostname.c_str(), **c);
  }
  CAPTURE(uuids);
  CHECK(std::set<std::string>(uuids.begin(), uuids.end()).size() == 3);
}

TEST_CASE("linux clones: reset and run again; dirty pages and private memory", "[linux][clone]") {
  REQUIRE_TEMPLATE();
  Consoles consoles;
  auto created = Clone::create(*lt.kvm, lt.tmpl, options_for(consoles));
  REQUIRE_OK(created);
  Clone& c = **created;

  REQUIRE_OK(c.start(request(11, "first-life", kHostnameUuid)));
  auto at_start = c.dirty_page_list();
  REQUIRE_OK(at_start);
  auto stop = c.run();
  REQUIRE_OK(stop);
  {
    auto out = consoles.of(11);
    CAPTURE(stop->detail, join(out));
    CHECK(stop->reason == StopReason::CommandExited);
    CHECK(stop->exit_status == 7);
    CHECK(has_line(out, "first-life"));
  }
  print_times("first life", c);
  auto dirty = c.dirty_pages();
  REQUIRE_OK(dirty);
  auto priv = c.private_bytes();
  REQUIRE_OK(priv);
  std::printf("[linux-clone] dirty pages: %zu at start (%s), %lu after running a shell command (%lu KiB private)\n",
              at_start->size(), pages_str(*at_start).c_str(), static_cast<unsigned long>(*dirty),
              static_cast<unsigned long>(*priv / 1024));
  CHECK(*dirty > 1);  // more than the mailbox: the guest ran a process
  CHECK(*priv == *dirty * kPage);

  auto t0 = std::chrono::steady_clock::now();
  REQUIRE_OK(c.reset());
  double reset_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[linux-clone] reset of %lu dirty pages: %.0f us\n", static_cast<unsigned long>(*dirty), reset_us);

  // A new life: before it runs, only the mailbox and KVM's own kvmclock
  // writes are private, exactly as at the first start.
  REQUIRE_OK(c.start(request(12, "second-life", kHostnameUuid)));
  auto restarted = c.dirty_page_list();
  REQUIRE_OK(restarted);
  CAPTURE(pages_str(*restarted), pages_str(*at_start));
  const auto expected = pages_written_at_start(*lt.tmpl);
  CAPTURE(pages_str(expected));
  CHECK(*restarted == expected);
  CHECK(*at_start == expected);
  auto priv2 = c.private_bytes();
  REQUIRE_OK(priv2);
  CHECK(*priv2 == 4096 * expected.size());

  auto stop2 = c.run();
  REQUIRE_OK(stop2);
  auto out = consoles.of(12);
  CAPTURE(stop2->detail, join(out));
  CHECK(stop2->reason == StopReason::CommandExited);
  CHECK(stop2->exit_status == 7);
  CHECK(has_line(out, "second-life"));
  CHECK(!has_line(out, "first-life"));
  print_times("after reset", c);
}

TEST_CASE("linux clones with devices: the template's disk and rng work in a clone and again after reset, "
          "and reset discards what the devices wrote into guest memory", "[linux][clone][virtio]") {
  REQUIRE_TEMPLATE();
  REQUIRE(lt.tmpl->state().devices.size() == 4);
  Consoles consoles;
  auto created = Clone::create(*lt.kvm, lt.tmpl, options_for(consoles));
  REQUIRE_OK(created);
  Clone& c = **created;
  // Block 100 was never read by the template: the device DMAs it into the
  // clone's page cache, a page KVM's dirty log does not see.
  HostHttpServer server("net-ok");
  const std::vector<std::string> cmd = {
      "/bin/sh", "-c",
      "dd if=/dev/vda bs=4096 skip=100 count=1 2>/dev/null | head -c 12; echo; "
      "head -c 512 /dev/hwrng | wc -c; cat /sys/block/vda/ro; wget -q -O - http://10.0.2.2:" +
          std::to_string(server.port()) + "/; echo; exit 5"};
  for (uint32_t life = 21; life <= 22; ++life) {
    CAPTURE(life);
    REQUIRE_OK(c.start(request(life, "dev-" + std::to_string(life), cmd)));
    auto stop = c.run();
    REQUIRE_OK(stop);
    auto out = consoles.of(life);
    CAPTURE(stop->detail, join(out));
    CHECK(stop->reason == StopReason::CommandExited);
    CHECK(stop->exit_status == 5);
    CHECK(has_line(out, "disk-at-100!"));
    CHECK(has_line(out, "512"));
    CHECK(has_line(out, "1"));
    CHECK(has_line(out, "net-ok"));  // the clone's own slirp, in both lives
    REQUIRE_OK(c.reset());
    // Every page but those a start always writes is the template's again.
    void* p = mmap(nullptr, lt.tmpl->mem_size(), PROT_READ, MAP_PRIVATE, lt.tmpl->memory_fd(), 0);
    REQUIRE(p != MAP_FAILED);
    Mapping tmem(p, lt.tmpl->mem_size());
    std::set<uint64_t> allowed;
    for (uint64_t pg : pages_written_at_start(*lt.tmpl)) allowed.insert(pg);
    std::vector<uint64_t> differing;
    for (const auto& r : c.machine().memory().regions())
      for (uint64_t off = 0; off < r.size; off += kPage)
        if (std::memcmp(r.host + off, tmem.bytes() + r.file_offset + off, kPage) != 0 &&
            !allowed.count((r.gpa + off) / kPage))
          differing.push_back((r.gpa + off) / kPage);
    CAPTURE(pages_str(differing));
    CHECK(differing.empty());
  }
}

TEST_CASE("linux clones: two clones of one template serve on the same guest port through two host ports",
          "[linux][clone][virtio]") {
  REQUIRE_TEMPLATE();
  Consoles consoles;
  const uint16_t ports[2] = {free_port(), free_port()};
  std::vector<std::unique_ptr<Clone>> clones;
  for (uint32_t i = 0; i < 2; ++i) {
    auto c = Clone::create(*lt.kvm, lt.tmpl, options_for(consoles));
    REQUIRE_OK(c);
    REQUIRE_OK((*c)->publish({{false, "127.0.0.1", ports[i], 80}}));
    const std::string name = "web-" + std::to_string(i + 1);
    REQUIRE_OK((*c)->start(request(31 + i, name,
                                   {"/bin/sh", "-c",
                                    "mkdir -p /tmp/www; hostname > /tmp/www/index.html; httpd -f -p 80 -h /tmp/www"})));
    clones.push_back(std::move(*c));
  }
  std::vector<std::thread> runs;
  for (auto& c : clones) runs.emplace_back([&c] { (void)c->run(); });
  std::string a = http_get_retry(ports[0], std::chrono::seconds(60));
  std::string b = http_get_retry(ports[1], std::chrono::seconds(60));
  for (auto& c : clones) c->machine().request_stop({StopReason::Stopped, 0, "test done"});
  for (auto& t : runs) t.join();
  CHECK(a == "web-1\n");
  CHECK(b == "web-2\n");
  // A port is the clone's alone: a third clone cannot take it ...
  auto third = Clone::create(*lt.kvm, lt.tmpl, options_for(consoles));
  REQUIRE_OK(third);
  auto taken = (*third)->publish({{false, "127.0.0.1", ports[0], 80}});
  REQUIRE_FALSE(taken.has_value());
  CHECK(taken.error().message.find("cannot publish 127.0.0.1:" + std::to_string(ports[0])) != std::string::npos);
  // ... until its owner is gone.
  clones.clear();  // the first two are gone: their ports are free again
  CHECK((*third)->publish({{false, "127.0.0.1", ports[0], 80}}).has_value());
}

// The user's workflow through the binary, with its own template under a
// temporary XDG_STATE_HOME.
TEST_CASE("vicvmm template create / ls / fork / snapshot / rm", "[linux][clone][cli]") {
  struct TempDir {
    std::string path;
    TempDir() {
      char tmpl[] = "/tmp/vicvmm-clone-cli-XXXXXX";
      REQUIRE(mkdtemp(tmpl) != nullptr);
      path = tmpl;
    }
    ~TempDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } tmp;
  const std::vector<std::string> env = {"XDG_STATE_HOME=" + tmp.path + "/state"};
  const std::string bin = vicvmm_bin();
  const std::string name = "clonetest";
  auto vicvmm = [&](std::vector<std::string> args) {
    args.insert(args.begin(), bin);
    return run_process(args, env);
  };

  auto t0 = std::chrono::steady_clock::now();
  Outcome created = vicvmm({"template", "create", name});
  std::printf("[linux-clone] vicvmm template create: %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  {
    CAPTURE(created.out, created.err);
    REQUIRE(created.status == 0);
    CHECK(std::filesystem::is_directory(tmp.path + "/state/vicvmm/templates/" + name));
  }

  Outcome ls = vicvmm({"template", "ls"});
  {
    CAPTURE(ls.out, ls.err);
    CHECK(ls.status == 0);
    CHECK(ls.out.find(name) != std::string::npos);
  }

  Outcome fork = vicvmm({"fork", name, "-n", "3", "--", "/bin/echo", "hi"});
  {
    CAPTURE(fork.out, fork.err);
    CHECK(fork.status == 0);
    const auto lines = lines_of(fork.out);
    for (const char* line : {"[1] hi", "[2] hi", "[3] hi"}) {
      CAPTURE(line);
      CHECK(has_line(lines, line));
    }
    CHECK(fork.err.find("3 clones in") != std::string::npos);
    CHECK(fork.err.find("0 failed") != std::string::npos);
    CHECK(fork.err.find("latency (us)") != std::string::npos);
    CHECK(fork.err.find("clone -> command exit") != std::string::npos);
    std::printf("[linux-clone] vicvmm fork -n 3 summary:%s", fork.err.c_str());
  }

  const std::string snap = tmp.path + "/snap";
  Outcome snapshot = vicvmm({"snapshot", name, snap});
  {
    CAPTURE(snapshot.out, snapshot.err);
    CHECK(snapshot.status == 0);
    CHECK(std::filesystem::is_regular_file(snap + "/state.bin"));
    CHECK(std::filesystem::is_regular_file(snap + "/memory.bin"));
  }
  Outcome from = vicvmm({"fork", "--from", snap, "-n", "1", "--", "/bin/true"});
  {
    CAPTURE(from.out, from.err);
    CHECK(from.status == 0);
  }

  Outcome rm = vicvmm({"template", "rm", name});
  {
    CAPTURE(rm.out, rm.err);
    CHECK(rm.status == 0);
    CHECK(!std::filesystem::exists(tmp.path + "/state/vicvmm/templates/" + name));
    Outcome ls2 = vicvmm({"template", "ls"});
    CHECK(ls2.status == 0);
    CHECK(ls2.out.find(name) == std::string::npos);
  }

  Outcome missing = vicvmm({"fork", name, "-n", "1", "--", "/bin/true"});
  {
    CAPTURE(missing.out, missing.err);
    CHECK(missing.status == 125);
    CHECK(missing.err.find("does not exist") != std::string::npos);
    CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);  // one line
    CHECK(missing.out.empty());
  }
  // The snapshot directory is independent of the removed template.
  Outcome from_again = vicvmm({"fork", "--from", snap, "-n", "1", "--", "/bin/sh", "-c", "exit 3"});
  {
    CAPTURE(from_again.out, from_again.err);
    CHECK(from_again.status != 0);  // a clone's failure fails the fork
    CHECK(from_again.err.find("1 failed") != std::string::npos);
  }
  // Another process truncating memory.bin while `fork --from` runs clones of
  // it: they run on (a sealed copy), no SIGBUS.
  {
    std::thread truncator([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      CHECK(truncate((snap + "/memory.bin").c_str(), 0) == 0);
    });
    Outcome during = vicvmm({"fork", "--from", snap, "-n", "3", "--parallel", "1", "--", "/bin/sh", "-c",
                             "sleep 1; echo alive"});
    truncator.join();
    CAPTURE(during.out, during.err);
    CHECK(during.status == 0);
    CHECK(std::count(during.out.begin(), during.out.end(), '\n') == 3);
    CHECK(during.out.find("alive") != std::string::npos);
  }
}
