// Container images end to end: a real Debian bookworm root filesystem made
// by mmdebstrap (tools/build-debian-image, cached), imported into the image
// store, run with `vicvmm run --image` and forked from a per-image template.
//
// The store and templates live in a state directory of their own under the
// cache (${XDG_CACHE_HOME:-~/.cache}/vicvmm/test-state): the image is imported
// and its EROFS disk built once, then reused by later runs (keyed by the
// tar's content through the tag).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "clone/clone.h"
#include "clone/template.h"
#include "tests/subprocess.h"

using namespace vicvmm::test;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string state_dir() {
  return env_or("XDG_CACHE_HOME", env_or("HOME", "/root") + "/.cache") + "/vicvmm/test-state";
}

Outcome vicvmm_cli(std::vector<std::string> args, const std::string& stdin_path = "/dev/null") {
  std::vector<std::string> argv{vicvmm_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, {"XDG_STATE_HOME=" + state_dir()}, stdin_path);
}

std::string sha256_of(const std::string& path) {
  Outcome o = run_process({"/usr/bin/sha256sum", path});
  return o.out.substr(0, 64);
}

// The Debian image's tag: named after the tar's content, so a new tar is a
// new image and an unchanged one is imported once.
const std::string& debian_image() {
  static std::string tag = [] {
    std::string tar = env_or("VICVMM_DEBIAN_TAR", "");
    if (tar.empty()) return std::string();
    std::string t = "debian-test:" + sha256_of(tar).substr(0, 12);
    if (vicvmm_cli({"image", "inspect", t}).status != 0) {
      Outcome o = vicvmm_cli({"image", "import", tar, t});
      if (o.status != 0) {
        FAIL_CHECK("image import failed: " << o.err);
        return std::string();
      }
    }
    return t;
  }();
  return tag;
}

#define REQUIRE_DEBIAN()                                                                        \
  if (debian_image().empty()) {                                                                 \
    FAIL("VICVMM_DEBIAN_TAR is not set (tools/test builds it with tools/build-debian-image)"); \
  }

const std::vector<std::string> kRun = {"run", "--timeout", "300", "--console", "none"};

Outcome run_image(std::vector<std::string> extra, const std::string& stdin_path = "/dev/null") {
  std::vector<std::string> args = kRun;
  args.push_back("--image");
  args.push_back(debian_image());
  args.insert(args.end(), extra.begin(), extra.end());
  return vicvmm_cli(args, stdin_path);
}

std::string temp_file(const std::string& content) {
  char path[] = "/tmp/vicvmm-image-test-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

}  // namespace

TEST_CASE("run --image: Debian's files, a dynamically linked bash, its exit status", "[linux][image]") {
  REQUIRE_DEBIAN();
  Outcome o = run_image({"--", "/bin/bash", "-c", "cat /etc/debian_version; echo \"bash $BASH_VERSION\"; exit 7"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 7);
  CHECK(o.out.rfind("12.", 0) == 0);
  CHECK(o.out.find("bash 5.2") != std::string::npos);
}

TEST_CASE("run --image: piped stdin reaches the image's shell, EOF ends it", "[linux][image]") {
  REQUIRE_DEBIAN();
  std::string in = temp_file("echo hi; read line; echo \"got [$line]\"; exit 7\nsecond line\n");
  // bash, not dash: on a non-seekable stdin only bash reads its script a
  // byte at a time, leaving the rest for `read` (POSIX asks for that).
  Outcome o = run_image({"--", "bash"}, in);
  unlink(in.c_str());
  CAPTURE(o.out, o.err);
  CHECK(o.status == 7);
  CHECK(o.out == "hi\ngot [second line]\n");
}

TEST_CASE("run --image: user, working directory, environment and hostname files", "[linux][image]") {
  REQUIRE_DEBIAN();
  Outcome o = run_image({"-u", "nobody", "-w", "/srv/work/dir", "-e", "FOO=bar baz", "--hostname", "box-9", "--",
                         "sh", "-c",
                         "id -u; id -g; pwd; echo \"$FOO\"; echo \"$HOME\"; cat /etc/hostname; grep box-9 /etc/hosts; "
                         "touch /root/x 2>/dev/null || echo denied"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out == "65534\n65534\n/srv/work/dir\nbar baz\n/nonexistent\nbox-9\n127.0.1.1\tbox-9\ndenied\n");

  Outcome numeric = run_image({"-u", "1234:4321", "--", "sh", "-c", "id -u; id -g; echo $HOME"});
  CAPTURE(numeric.out, numeric.err);
  CHECK(numeric.out == "1234\n4321\n/\n");

  Outcome unknown = run_image({"-u", "nosuchuser", "--", "true"});
  CAPTURE(unknown.out, unknown.err);
  CHECK(unknown.status == 126);
  CHECK(unknown.err.find("unable to find user nosuchuser") != std::string::npos);
}

TEST_CASE("run --image: a missing command exits 127 with the image shell's message", "[linux][image]") {
  REQUIRE_DEBIAN();
  Outcome o = run_image({"--", "no-such-command", "arg"});
  CAPTURE(o.out, o.err);
  CHECK(o.status == 127);
  CHECK(o.err.find("no-such-command: not found") != std::string::npos);  // dash's own words
}

TEST_CASE("run --image: an environment far beyond one mailbox page", "[linux][image]") {
  REQUIRE_DEBIAN();
  std::vector<std::string> args;
  for (int i = 0; i < 200; ++i) {
    args.push_back("-e");
    args.push_back("BIG_" + std::to_string(i) + "=" + std::string(200, static_cast<char>('a' + i % 26)));
  }
  args.insert(args.end(), {"--", "sh", "-c", "env | grep -c '^BIG_'; echo ${#BIG_199}; echo $BIG_27 | cut -c1-3"});
  Outcome o = run_image(args);
  CAPTURE(o.out, o.err);
  CHECK(o.status == 0);
  CHECK(o.out == "200\n200\nbbb\n");

  // Past the 128 KiB personality limit: one clear error, no guest.
  std::vector<std::string> huge;
  for (int i = 0; i < 14; ++i) {  // one argument may not exceed 128 KiB on the host either
    huge.push_back("-e");
    huge.push_back("HUGE" + std::to_string(i) + "=" + std::string(10 * 1024, 'x'));
  }
  huge.insert(huge.end(), {"--", "true"});
  Outcome h = run_image(huge);
  CAPTURE(h.err);
  CHECK(h.status == 125);
  CHECK(h.err.find("exceed 128 KiB") != std::string::npos);
}

TEST_CASE("template of an image: clones write the same path privately; the image is unchanged; rm refused",
          "[linux][image][clone]") {
  REQUIRE_DEBIAN();
  const std::string name = "image-test-debian";
  Outcome disk = vicvmm_cli({"image", "disk", debian_image()});
  REQUIRE(disk.status == 0);
  const std::string disk_path = disk.out.substr(0, disk.out.find('\n'));
  const std::string disk_hash = sha256_of(disk_path);
  Outcome tc = vicvmm_cli({"template", "create", name, "--image", debian_image(), "--force", "--timeout", "600"});
  CAPTURE(tc.out, tc.err);
  REQUIRE(tc.status == 0);

  // Each clone writes its own hostname into the same file, waits, reads it back.
  Outcome f = vicvmm_cli({"fork", name, "-n", "3", "--parallel", "3", "--timeout", "300", "--", "/bin/bash", "-c",
                      "hostname > /etc/motd; sleep 1; echo \"$(cat /etc/motd) $(cat /etc/debian_version)\""});
  CAPTURE(f.out, f.err);
  CHECK(f.status == 0);
  for (int i = 1; i <= 3; ++i)
    CHECK(f.out.find("[" + std::to_string(i) + "] clone-" + std::to_string(i) + " 12.") != std::string::npos);

  // A later clone sees the image's own /etc/motd, not an earlier clone's.
  Outcome again = vicvmm_cli({"fork", name, "-n", "1", "--", "sh", "-c", "grep -c clone- /etc/motd; true"});
  CAPTURE(again.out, again.err);
  CHECK(again.status == 0);
  CHECK(again.out.find("[1] 0") != std::string::npos);

  // An imported root filesystem has no Cmd (as with docker import): fork
  // without a command says so.
  Outcome dflt = vicvmm_cli({"fork", name, "-n", "1"});
  CAPTURE(dflt.out, dflt.err);
  CHECK(dflt.status == 125);
  CHECK(dflt.err.find("no command given") != std::string::npos);

  // The image itself is untouched by its clones' writes.
  CHECK(sha256_of(disk_path) == disk_hash);

  Outcome rm = vicvmm_cli({"image", "rm", debian_image()});
  CAPTURE(rm.err);
  CHECK(rm.status == 125);
  CHECK(rm.err.find(name) != std::string::npos);
  CHECK(vicvmm_cli({"image", "inspect", debian_image()}).status == 0);
}

TEST_CASE("base template: any image is attached at fork time, and a reset empties the slot again",
          "[linux][image][clone]") {
  REQUIRE_DEBIAN();
  // Through the CLI: the base template is made on first use, then each
  // clone attaches the image's disk at start.
  Outcome f = vicvmm_cli({"fork", "--image", debian_image(), "-n", "2", "--parallel", "2", "--timeout", "300", "--",
                          "/bin/bash", "-c", "echo \"$(cat /etc/debian_version) $(hostname) $(id -un)\""});
  CAPTURE(f.out, f.err);
  REQUIRE(f.status == 0);
  for (int i = 1; i <= 2; ++i)
    CHECK(f.out.find("[" + std::to_string(i) + "] 12.") != std::string::npos);
  CHECK(f.out.find(" clone-1 root\n") != std::string::npos);
  CHECK(f.out.find(" clone-2 root\n") != std::string::npos);

  // A template name and --image together are refused.
  Outcome both = vicvmm_cli({"fork", "sometemplate", "--image", debian_image(), "--", "true"});
  CHECK(both.status == 125);
  CHECK(both.err.find("not two") != std::string::npos);

  // Through the library: one clone, three lives: image, no image, image.
  // The newest base template: a state directory kept across runs also holds
  // bases of earlier guests (their initramfs hash names them), which this
  // build's devices may not fit.
  std::string base;
  std::filesystem::file_time_type newest{};
  for (const auto& e : std::filesystem::directory_iterator(state_dir() + "/vicvmm/templates"))
    if (e.path().filename().string().rfind("image-base-", 0) == 0 && (base.empty() || e.last_write_time() > newest)) {
      base = e.path();
      newest = e.last_write_time();
    }
  REQUIRE_FALSE(base.empty());
  Outcome disk = vicvmm_cli({"image", "disk", debian_image()});
  REQUIRE(disk.status == 0);
  std::string disk_path = disk.out.substr(0, disk.out.find('\n'));

  auto kvm = vicvmm::Kvm::open();
  REQUIRE(kvm);
  auto tmpl = vicvmm::Template::load(base, vicvmm::detect_host_kind());
  INFO((tmpl ? std::string() : tmpl.error().message));
  REQUIRE(tmpl);
  std::mutex mu;
  std::string out;
  vicvmm::CloneOptions opts;
  opts.timeout = std::chrono::seconds(300);
  opts.on_output = [&](uint32_t, uint32_t, std::span<const uint8_t> b) {
    std::lock_guard lock(mu);
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  };
  auto clone = vicvmm::Clone::create(*kvm, *tmpl, opts);
  INFO((clone ? std::string() : clone.error().message));
  REQUIRE(clone);
  auto life = [&](bool with_image, std::vector<std::string> argv) {
    {
      std::lock_guard lock(mu);
      out.clear();
    }
    vicvmm::AgentRequest req;
    req.argv = std::move(argv);
    req.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    req.hostname = "lives";
    if (with_image) {
      req.flags = VIC_MB_IMAGE_ROOT;
      auto a = (*clone)->attach_image(disk_path);
      REQUIRE(a);
    }
    auto started = (*clone)->start(req);
    INFO((started ? std::string() : started.error().message));
    REQUIRE(started);
    auto stop = (*clone)->run();
    REQUIRE(stop);
    CHECK(stop->reason == vicvmm::StopReason::CommandExited);
    std::lock_guard lock(mu);
    return std::make_pair(stop->exit_status, out);
  };
  auto [s1, o1] = life(true, {"/bin/bash", "-c", "cat /etc/debian_version; echo x > /root/mark; cat /root/mark"});
  CHECK(s1 == 0);
  CHECK(o1.rfind("12.", 0) == 0);
  CHECK(o1.find("x\n") != std::string::npos);
  REQUIRE((*clone)->reset());
  // No image: the initramfs's busybox, and the slot is empty again.
  auto [s2, o2] = life(false, {"/bin/sh", "-c", "cat /sys/block/vda/size; test -e /etc/debian_version || echo initramfs"});
  CHECK(s2 == 0);
  CHECK(o2 == "0\ninitramfs\n");
  REQUIRE((*clone)->reset());
  auto [s3, o3] = life(true, {"/bin/sh", "-c", "test -e /root/mark || echo fresh; grep -c ^ID=debian /etc/os-release"});
  CHECK(s3 == 0);
  CHECK(o3 == "fresh\n1\n");
}
