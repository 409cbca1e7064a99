// Bad input, counted: every subcommand and file format given missing,
// empty, truncated, corrupt, absurd or hostile input. Each case must give
// exactly one error line ("vicvmm: error: ..."), a non-zero exit that is
// not a signal nor a hang, leave no file behind in the scratch or state
// directory, and leave every input byte-for-byte as it was.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "tests/subprocess.h"

using namespace vicvmm::test;
namespace fs = std::filesystem;

namespace {

struct Case {
  std::vector<std::string> args;
  std::string says;       // a piece of the error line ("" = any)
  bool needs_kvm = false; // the check happens after /dev/kvm is opened
};

// Path -> size and content of every file under `root` (FIFOs by type only).
std::map<std::string, std::string> snapshot_tree(const std::string& root) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const auto& p = it->path();
    if (it->is_fifo(ec)) {
      out[p] = "<fifo>";
    } else if (it->is_regular_file(ec)) {
      out[p] = slurp(p);
    } else if (it->is_directory(ec)) {
      out[p] = "<dir>";
    }
  }
  return out;
}

bool kvm_skipped() {
  const char* s = std::getenv("VICVMM_SKIP_KVM");
  return s && std::string(s) == "1";
}

}  // namespace

TEST_CASE("bad input, counted: one error line, non-zero exit, nothing written, inputs untouched", "[cli][bad-input]") {
  ScratchDir s;
  const std::string d = s.path + "/in";  // every input lives here
  fs::create_directories(d + "/dir");
  fs::create_directories(d + "/empty-snap");
  std::ofstream(d + "/empty", std::ios::binary);
  {
    std::ofstream g(d + "/garbage", std::ios::binary);
    for (int i = 0; i < 8192; ++i) g.put(static_cast<char>((i * 7919) ^ (i >> 3)));
  }
  // An ELF header cut short: the start of a real program.
  std::string elf = slurp("/bin/true").substr(0, 100);
  std::ofstream(d + "/truncated-elf", std::ios::binary) << elf;
  REQUIRE(mkfifo((d + "/fifo").c_str(), 0600) == 0);
  // Snapshot directories: state.bin a FIFO, empty, garbage; memory.bin missing.
  for (const char* name : {"fifo-snap", "empty-state", "garbage-state", "no-memory"}) fs::create_directories(d + "/" + name);
  REQUIRE(mkfifo((d + "/fifo-snap/state.bin").c_str(), 0600) == 0);
  REQUIRE(mkfifo((d + "/fifo-snap/memory.bin").c_str(), 0600) == 0);
  std::ofstream(d + "/empty-state/state.bin", std::ios::binary);
  std::ofstream(d + "/empty-state/memory.bin", std::ios::binary);
  fs::copy_file(d + "/garbage", d + "/garbage-state/state.bin");
  fs::copy_file(d + "/garbage", d + "/garbage-state/memory.bin");
  fs::copy_file(d + "/garbage", d + "/no-memory/state.bin");
  // A tar that is cut in the middle of its first member.
  {
    std::ofstream t(d + "/truncated.tar", std::ios::binary);
    std::string header(512, '\0');
    std::string name = "etc/passwd";
    std::copy(name.begin(), name.end(), header.begin());
    std::string size = "00000010000";  // 4096 bytes promised, none given
    std::copy(size.begin(), size.end(), header.begin() + 124);
    t << header;
  }
  const std::string long_name(300, 'n');
  const std::string out = s.path + "/out";  // outputs go here: nothing may appear
  fs::create_directories(out);
  const std::string state = s.path + "/state";
  fs::create_directories(state);

  const std::vector<Case> cases = {
      // run: files
      {{"run", "--kernel", d + "/missing", "--", "true"}, "missing"},
      {{"run", "--kernel", d + "/empty", "--", "true"}, "empty"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--", "true"}, "", true},
      {{"run", "--kernel", d + "/truncated-elf", "--", "true"}, "", true},
      {{"run", "--kernel", d + "/dir", "--", "true"}, "dir"},
      {{"run", "--kernel", d + "/fifo", "--", "true"}, "fifo"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/missing", "--", "true"}, "missing"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--", "true"}, "", true},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/fifo", "--", "true"}, "fifo"},
      // run: numbers
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--mem", "0", "--", "true"}, "--mem"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--mem", "1T", "--", "true"}, "--mem"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--mem", "lots", "--", "true"}, "--mem"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--mem", "-5M", "--", "true"}, "--mem"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--mem", "99999999999999999999", "--", "true"}, "--mem"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--vcpus", "0", "--", "true"}, "--vcpus"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--vcpus", "38", "--", "true"}, "--vcpus"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--vcpus", "99999999999", "--", "true"}, "vcpus"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--timeout", "soon", "--", "true"}, "timeout"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--timeout", "-1", "--", "true"}, "timeout"},
      // run: outputs
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--console", "/proc/version", "--", "true"}, "/proc"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--console", d + "/fifo", "--", "true"}, "fifo"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--console", d + "/dir", "--", "true"}, "dir"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--console", out + "/no-such-dir/console.log", "--", "true"}, "console"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--console", out + "/console.log", "--console-limit", "lots", "--", "true"}, "console-limit"},
      // run: devices and ports
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--disk", d + "/missing", "--", "true"}, "missing"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--disk", d + "/fifo", "--", "true"}, "fifo"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--disk", d + "/dir", "--", "true"}, "dir"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "--disk", "", "--", "true"}, "disk"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "-p", "70000:80", "--", "true"}, "70000"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "-p", "http", "--", "true"}, "http"},
      {{"run", "--kernel", d + "/garbage", "--initrd", d + "/garbage", "-p", "80:0", "--", "true"}, "80:0"},
      {{"run", "--image", "no-such-image:1", "--", "true"}, "no-such-image"},
      {{"run", "--frobnicate"}, "--frobnicate"},
      // template
      {{"template", "create"}, ""},
      {{"template", "create", "a/b"}, "a/b"},
      {{"template", "create", ".."}, ".."},
      {{"template", "create", long_name}, "nnnn"},
      {{"template", "create", "ok-name", "--mem", "0"}, "--mem"},
      {{"template", "create", "ok-name", "--kernel", d + "/missing"}, "missing"},
      {{"template", "create", "ok-name", "--timeout", "soon"}, "timeout"},
      {{"template", "create", "ok-name", "--image", "no-such-image:1"}, "no-such-image"},
      {{"template", "rm", "no-such-template"}, "no-such-template"},
      {{"template", "rm", "../etc"}, ".."},
      {{"template", "frob"}, "frob"},
      // fork
      {{"fork", "no-such-template", "--", "true"}, "no-such-template"},
      {{"fork"}, "fork"},
      {{"fork", "relT", "--from", d + "/empty-snap", "--", "true"}, "not two"},
      {{"fork", "relT", "--from", d + "/empty-snap"}, "not two"},
      {{"fork", "--from", d + "/missing", "--", "true"}, "missing"},
      {{"fork", "--from", d + "/empty-snap", "--", "true"}, "state.bin"},
      {{"fork", "--from", d + "/fifo-snap", "--", "true"}, "not a regular file"},
      {{"fork", "--from", d + "/empty-state", "--", "true"}, "state.bin"},
      {{"fork", "--from", d + "/garbage-state", "--", "true"}, "state.bin"},
      {{"fork", "--from", d + "/no-memory", "--", "true"}, ""},
      {{"fork", "--from", d + "/garbage", "--", "true"}, "garbage"},
      {{"fork", "no-such-template", "-n", "0", "--", "true"}, ""},
      {{"fork", "no-such-template", "-n", "many", "--", "true"}, "-n"},
      {{"fork", "--image", "no-such-image:1", "--", "true"}, "no-such-image"},
      {{"fork", "no-such-template", "-p", "99999:80", "--", "true"}, ""},
      // snapshot
      {{"snapshot", "no-such-template", out + "/snap"}, "no-such-template"},
      {{"snapshot", "../etc", out + "/snap"}, ".."},
      {{"snapshot"}, ""},
      // image
      {{"image", "load", d + "/missing"}, "missing"},
      {{"image", "load", d + "/empty"}, ""},
      {{"image", "load", d + "/garbage"}, ""},
      {{"image", "load", d + "/truncated.tar"}, ""},
      {{"image", "load", d + "/dir"}, ""},
      {{"image", "load", d + "/fifo"}, "fifo"},
      {{"image", "import", d + "/fifo", "x:1"}, "fifo"},
      {{"image", "import", d + "/missing", "x:1"}, "missing"},
      {{"image", "import", d + "/garbage", "x:1"}, ""},
      {{"image", "import", d + "/truncated.tar", "x:1"}, ""},
      {{"image", "import", d + "/empty", "Bad Name!"}, "Bad Name!"},
      {{"image", "import", d + "/empty", long_name + ":1"}, ""},
      {{"image", "import", d + "/empty", "../../x:1"}, ""},
      {{"image", "inspect", "no-such-image:1"}, "no-such-image"},
      {{"image", "rm", "no-such-image:1"}, "no-such-image"},
      {{"image", "tag", "no-such-image:1", "y:1"}, "no-such-image"},
      {{"image", "disk", "no-such-image:1"}, "no-such-image"},
      {{"image", "frob"}, "frob"},
      // serve, ps, bench, the top level
      {{"serve", "--http", "0.0.0.0:2375", "--no-containers", "--socket", out + "/d.sock"}, "0.0.0.0"},
      {{"serve", "--http", "not-an-address", "--no-containers", "--socket", out + "/d.sock"}, "not-an-address"},
      {{"serve", "--socket", d + "/garbage/d.sock", "--no-containers"}, "garbage"},
      {{"serve", "--ready", "lots"}, "ready"},
      {{"ps", "--frob"}, "--frob"},
      {{"bench", "--frob"}, "--frob"},
      {{"bogus"}, "bogus"},
      {{"--frobnicate"}, "--frobnicate"},
  };

  const auto inputs_before = snapshot_tree(d);
  const std::vector<std::string> env = {"XDG_STATE_HOME=" + state, "XDG_CACHE_HOME=" + s.path + "/no-cache"};
  size_t counted = 0;
  for (const Case& c : cases) {
    if (c.needs_kvm && kvm_skipped()) continue;
    std::vector<std::string> argv = {"/usr/bin/timeout", "20", vicvmm_bin()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    Outcome o = run_process(argv, env);
    CAPTURE(c.args, o.status, o.err, o.out);
    CHECK(o.status != 0);
    CHECK(o.status != 124);  // timeout(1): it hung
    CHECK(o.status < 128);   // an exit, not a signal
    CHECK(std::count(o.err.begin(), o.err.end(), '\n') == 1);
    CHECK(o.err.rfind("vicvmm: error: ", 0) == 0);
    if (!c.says.empty()) CHECK(o.err.find(c.says) != std::string::npos);
    // No half-written output, nothing new in the state directory.
    CHECK(fs::is_empty(out));
    std::vector<std::string> left;
    for (const auto& [path, content] : snapshot_tree(state))
      if (content != "<dir>" && fs::path(path).filename() != "lock") left.push_back(path);  // the store's flock file
    CAPTURE(left);
    CHECK(left.empty());
    ++counted;
  }
  CHECK(snapshot_tree(d) == inputs_before);
  INFO(counted << " bad inputs checked");
  CHECK(counted >= (kvm_skipped() ? 60u : 70u));
  WARN(counted << " bad inputs, each one error line and a clean exit");
}
