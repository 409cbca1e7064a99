// `vicvmm` on bad input: one clear error line, a non-zero exit, no crash.
// None of these reach a running guest, so they run without /dev/kvm too.
#define CATCH_CONFIG_MAIN
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/subprocess.h"

using namespace vicvmm::test;

namespace {

std::string temp_file(const std::string& name, const std::string& content) {
  std::string path = "/tmp/vicvmm-cli-" + std::to_string(getpid()) + "-" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Asserts the one-line error contract and returns the line.
std::string expect_error(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv{vicvmm_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  Outcome o = run_process(argv, env);
  CAPTURE(args, o.err, o.out);
  CHECK(o.status != 0);
  CHECK(o.status < 128);  // an exit, not a signal
  CHECK(count_lines(o.err) == 1);
  CHECK(o.err.rfind("vicvmm: error: ", 0) == 0);
  return o.err;
}

// Kernel and initrd contents are checked once guest memory exists, which
// is after /dev/kvm opened; without KVM those cases cannot be reached.
bool kvm_skipped() {
  const char* s = std::getenv("VICVMM_SKIP_KVM");
  return s && std::string(s) == "1";
}

}  // namespace

TEST_CASE("missing kernel file") {
  auto e = expect_error({"run", "--kernel", "/nonexistent/vmlinux", "--", "/bin/true"});
  CHECK(e.find("/nonexistent/vmlinux") != std::string::npos);
  CHECK(e.find("No such file") != std::string::npos);
}

TEST_CASE("a file that is not a kernel") {
  if (kvm_skipped()) return;
  auto k = temp_file("notakernel", std::string(8192, 'x'));
  auto i = temp_file("initrd-ok", "070701" + std::string(200, '0'));
  auto e = expect_error({"run", "--kernel", k, "--initrd", i, "--", "/bin/true"});
  CHECK(e.find("not a Linux kernel") != std::string::npos);
  unlink(k.c_str());
  unlink(i.c_str());
}

TEST_CASE("an empty kernel file") {
  auto k = temp_file("empty", "");
  auto e = expect_error({"run", "--kernel", k, "--initrd", "none", "--", "/bin/true"});
  CHECK(e.find("empty") != std::string::npos);
  unlink(k.c_str());
}

TEST_CASE("a garbage initrd") {
  // Needs a real kernel so that the initrd is the first thing found wrong.
  if (kvm_skipped()) return;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  std::string kernel = (xdg && *xdg ? std::string(xdg) : std::string(std::getenv("HOME")) + "/.cache") + "/vicvmm/vmlinux";
  REQUIRE(access(kernel.c_str(), R_OK) == 0);  // tools/test builds the default guest first
  auto i = temp_file("garbage-initrd", std::string(4096, '\x5a'));
  auto e = expect_error({"run", "--kernel", kernel, "--initrd", i, "--", "/bin/true"});
  CHECK(e.find("initrd") != std::string::npos);
  unlink(i.c_str());
}

TEST_CASE("bad --mem values") {
  auto k = temp_file("k2", std::string(8192, 'x'));
  CHECK(expect_error({"run", "--kernel", k, "--mem", "1M", "--", "/bin/true"}).find("--mem") != std::string::npos);
  CHECK(expect_error({"run", "--kernel", k, "--mem", "lots", "--", "/bin/true"}).find("--mem") != std::string::npos);
  CHECK(expect_error({"run", "--kernel", k, "--mem", "100000G", "--", "/bin/true"}).find("--mem") != std::string::npos);
  unlink(k.c_str());
}

TEST_CASE("no /dev/kvm") {
  auto k = temp_file("k3", std::string(8192, 'x'));
  auto i = temp_file("i3", "070701" + std::string(200, '0'));
  auto e = expect_error({"run", "--kernel", k, "--initrd", i, "--", "/bin/true"},
                        {"VICVMM_KVM_DEVICE=/nonexistent/kvm"});
  CHECK(e.find("/nonexistent/kvm") != std::string::npos);
  CHECK(e.find("no KVM") != std::string::npos);
  unlink(k.c_str());
  unlink(i.c_str());
}

TEST_CASE("unknown option and missing subcommand") {
  expect_error({"run", "--bogus"});
  expect_error({});
}

TEST_CASE("version and help succeed") {
  Outcome v = run_process({vicvmm_bin(), "version"});
  CHECK(v.status == 0);
  CHECK(v.out.rfind("vicvmm ", 0) == 0);
  Outcome h = run_process({vicvmm_bin(), "run", "--help"});
  CHECK(h.status == 0);
  CHECK(h.out.find("--mem") != std::string::npos);
}

TEST_CASE("--disk: a missing image, an unknown option, a FIFO, a directory, an empty path") {
  auto e = expect_error({"run", "--disk", "/nonexistent/disk.img", "--", "/bin/true"});
  CHECK(e.find("disk /nonexistent/disk.img") != std::string::npos);
  CHECK(e.find("No such file") != std::string::npos);

  auto img = temp_file("disk.img", std::string(4096, '\0'));
  e = expect_error({"run", "--disk", img + ",rox", "--", "/bin/true"});
  CHECK(e.find("unknown option 'rox'") != std::string::npos);

  std::string fifo = "/tmp/vicvmm-cli-" + std::to_string(getpid()) + "-disk.fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  e = expect_error({"run", "--disk", fifo, "--", "/bin/true"});  // must not hang in open()
  CHECK(e.find("not a regular file or block device") != std::string::npos);
  unlink(fifo.c_str());

  e = expect_error({"run", "--disk", "/tmp", "--", "/bin/true"});
  CHECK(e.find("disk /tmp") != std::string::npos);
  e = expect_error({"run", "--disk", ",ro", "--", "/bin/true"});
  CHECK(e.find("no image path") != std::string::npos);
  unlink(img.c_str());
}

TEST_CASE("--disk: a read-write image is never opened twice, a read-only one may be") {
  auto img = temp_file("disk2.img", std::string(4096, '\0'));
  auto e = expect_error({"run", "--disk", img, "--disk", img, "--", "/bin/true"});
  CHECK(e.find("in use by another VM") != std::string::npos);
  e = expect_error({"run", "--disk", img + ",ro", "--disk", img, "--", "/bin/true"});
  CHECK(e.find("in use by another VM") != std::string::npos);
  unlink(img.c_str());
}

TEST_CASE("an unknown subcommand or option is named, at every level") {
  CHECK(expect_error({"bogus"}).find("unknown subcommand 'bogus'") != std::string::npos);
  CHECK(expect_error({"--frobnicate"}).find("unknown option '--frobnicate'") != std::string::npos);
  CHECK(expect_error({"template", "frob"}).find("unknown command 'frob'") != std::string::npos);
}

TEST_CASE("--console may not be one of the inputs, nor a /proc file; the input is untouched") {
  std::string kernel_bytes(8192, 'k');
  auto k = temp_file("console-kernel", kernel_bytes);
  auto e = expect_error({"run", "--kernel", k, "--console", k, "--", "/bin/true"});
  CHECK(e.find("an output must not be one of the inputs") != std::string::npos);
  std::ifstream in(k, std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == kernel_bytes);
  e = expect_error({"run", "--kernel", k, "--console", "/proc/version", "--", "/bin/true"});
  CHECK(e.find("not a place for console output") != std::string::npos);
  unlink(k.c_str());
}

TEST_CASE("--vcpus beyond what the MP table holds") {
  auto e = expect_error({"run", "--vcpus", "38", "--", "/bin/true"});
  CHECK(e.find("must be 1..37") != std::string::npos);
}

TEST_CASE("fork with both a template name and --from is refused, not run as a command") {
  auto e = expect_error({"fork", "relT", "--from", "/nonexistent-dir", "--", "/bin/true"});
  CHECK(e.find("not two") != std::string::npos);
}

TEST_CASE("a snapshot whose state.bin or memory.bin is a FIFO is refused, not waited on") {
  if (kvm_skipped()) return;
  std::string dir = "/tmp/vicvmm-cli-" + std::to_string(getpid()) + "-fifo-snap";
  REQUIRE(mkdir(dir.c_str(), 0700) == 0);
  REQUIRE(mkfifo((dir + "/state.bin").c_str(), 0600) == 0);
  REQUIRE(mkfifo((dir + "/memory.bin").c_str(), 0600) == 0);
  auto e = expect_error({"fork", "--from", dir, "--", "/bin/true"});
  CHECK(e.find("state.bin: not a regular file") != std::string::npos);
  unlink((dir + "/state.bin").c_str());
  unlink((dir + "/memory.bin").c_str());
  rmdir(dir.c_str());
}

TEST_CASE("with stderr closed or full, and stdout full, the CLI exits with an error code, never aborts") {
  const std::string bin = vicvmm_bin();
  Outcome closed = run_process({"/bin/sh", "-c", "'" + bin + "' bogus 2>&-; echo rc=$?"});
  CHECK(closed.out == "rc=125\n");
  Outcome full = run_process({"/bin/sh", "-c", "'" + bin + "' bogus 2>/dev/full; echo rc=$?"});
  CHECK(full.out == "rc=125\n");
  Outcome out_full = run_process({"/bin/sh", "-c", "'" + bin + "' version >/dev/full; echo rc=$?"});
  CHECK(out_full.out == "rc=125\n");
  CHECK(out_full.err.find("writing standard output") != std::string::npos);
}
