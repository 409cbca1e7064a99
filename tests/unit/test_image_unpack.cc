// Layer unpacking (image/unpack.h) against hostile archives: every escape
// attempt is refused naming the entry, and well-formed layers come out
// exactly (whiteouts, links, devices, modes, owners, xattrs).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>

#include "image/digest.h"
#include "image/unpack.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_helpers.h"

using namespace vicvmm;
using namespace vicvmm::image;
using namespace vicvmm::test;
using Catch::Matchers::Contains;

namespace {

struct Tree {
  ScratchDir scratch;
  std::string root = scratch / "root";
  UniqueFd fd;
  UnpackState state;
  Limits limits;
  int n = 0;
  Tree() {
    mkdir(root.c_str(), 0755);
    fd.reset(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  Result<void> apply(const std::vector<TarMember>& members, bool gzip = false) {
    std::string tar = scratch / ("layer" + std::to_string(n++) + ".tar");
    write_tar(tar, members, gzip);
    return apply_file(tar);
  }
  Result<void> apply_file(const std::string& tar, const std::string& digest = "") {
    return apply_layer(fd.get(), LayerSource{tar, digest, "layer L"}, limits, state);
  }
  std::string at(const std::string& rel) const { return root + "/" + rel; }
};

bool exists_nofollow(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("unpack refuses names that climb out or are absolute", "[image]") {
  ScratchDir outside;
  Tree t;
  auto r = t.apply({tar_file("ok", "x"), tar_file("../escaped", "pwned")});
  CHECK(error_of(r) == "layer L: entry ../escaped: path climbs out with '..'");
  CHECK_FALSE(exists_nofollow(t.scratch / "escaped"));

  Tree t2;
  r = t2.apply({tar_file("a/../../escaped", "pwned")});
  CHECK(error_of(r) == "layer L: entry a/../../escaped: path climbs out with '..'");

  Tree t3;
  r = t3.apply({tar_file("/etc/escaped-abs", "pwned")});
  CHECK(error_of(r) == "layer L: entry /etc/escaped-abs: absolute path");
  CHECK_FALSE(exists_nofollow("/etc/escaped-abs"));
}

TEST_CASE("unpack refuses writing through a symlink that leaves the root", "[image]") {
  Tree t;
  auto r = t.apply({tar_symlink("evil", "../../../../../../tmp"), tar_file("evil/passwd", "pwned")});
  CHECK(error_of(r) ==
        "layer L: entry evil/passwd: writes through symlink evil, which points outside the image root");
  CHECK_FALSE(exists_nofollow("/tmp/passwd"));

  // Also when the symlink came from a lower layer.
  Tree t2;
  REQUIRE(t2.apply({tar_dir("d"), tar_symlink("d/up", "../../..")}));
  r = t2.apply({tar_file("d/up/x", "pwned")});
  CHECK(error_of(r) == "layer L: entry d/up/x: writes through symlink d/up, which points outside the image root");

  // A later layer that replaces the symlink with a directory lifts the ban.
  REQUIRE(t2.apply({tar_dir("d/up"), tar_file("d/up/x", "fine")}));
  CHECK(slurp(t2.at("d/up/x")) == "fine");
}

TEST_CASE("unpack refuses hardlinks out of the root", "[image]") {
  Tree t;
  auto r = t.apply({tar_hardlink("h", "../../../etc/passwd")});
  CHECK(error_of(r) == "layer L: entry h: hardlink target ../../../etc/passwd: path climbs out with '..'");
  Tree t2;
  r = t2.apply({tar_hardlink("h", "/etc/passwd")});
  CHECK(error_of(r) == "layer L: entry h: hardlink target /etc/passwd: absolute path");
  CHECK_FALSE(exists_nofollow(t2.at("h")));
  // Through an escaping symlink.
  Tree t3;
  r = t3.apply({tar_symlink("up", "../.."), tar_hardlink("h", "up/etc/passwd")});
  CHECK(error_of(r) ==
        "layer L: entry h: hardlink target up/etc/passwd: writes through symlink up, which points outside the image root");
}

TEST_CASE("unpack: absolute symlinks resolve inside the root", "[image]") {
  Tree t;
  REQUIRE(t.apply({tar_dir("run"), tar_dir("var"), tar_symlink("var/run", "/run"), tar_file("var/run/pid", "42"),
                   tar_symlink("etc", "/nonexistent/.."), tar_symlink("abs", "/../../.."), tar_file("abs/inside", "in")}));
  CHECK(slurp(t.at("run/pid")) == "42");
  CHECK(slurp(t.at("inside")) == "in");  // "/../../.." is the root itself under RESOLVE_IN_ROOT
  CHECK_FALSE(exists_nofollow("/inside"));
}

TEST_CASE("unpack never writes through an existing symlink or hardlink", "[image]") {
  ScratchDir outside;
  spit(outside / "victim", "original");
  Tree t;
  REQUIRE(t.apply({tar_file("target", "shared"), tar_hardlink("link", "target"), tar_symlink("sym", "target")}));
  REQUIRE(t.apply({tar_file("link", "new link content"), tar_file("sym", "new sym content")}));
  CHECK(slurp(t.at("target")) == "shared");
  CHECK(slurp(t.at("link")) == "new link content");
  struct stat st {};
  REQUIRE(lstat(t.at("sym").c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
}

TEST_CASE("unpack refuses truncated and corrupt archives", "[image]") {
  Tree t;
  std::string tar = t.scratch / "big.tar";
  write_tar(tar, {tar_file("a", std::string(100000, 'a')), tar_file("b", "bbb")});
  std::string bytes = slurp(tar);
  spit(tar, bytes.substr(0, 50000));
  CHECK_THAT(error_of(t.apply_file(tar)), Contains("layer L: corrupt or truncated archive") ||
                                              Contains("layer L: entry a: corrupt or truncated archive"));

  Tree t2;
  std::string gz = t2.scratch / "bad.tar.gz";
  write_tar(gz, {tar_file("a", std::string(100000, 'a'))}, /*gzip=*/true);
  std::string z = slurp(gz);
  for (size_t i = 40; i < 60 && i < z.size(); ++i) z[i] = static_cast<char>(~z[i]);
  spit(gz, z);
  auto r = t2.apply_file(gz);
  CHECK_FALSE(r);
  CHECK_THAT(error_of(r), Contains("layer L"));
}

TEST_CASE("unpack stops a decompression bomb at the limit", "[image]") {
  Tree t;
  t.limits.max_unpacked_bytes = 1 << 20;
  auto r = t.apply({tar_file("a", std::string(600 << 10, 0)), tar_file("b", std::string(600 << 10, 0))}, /*gzip=*/true);
  CHECK(error_of(r) == "layer L: unpacks to more than 1048576 bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)");
  Tree t3;
  t3.limits.max_entries = 3;
  r = t3.apply({tar_file("1", ""), tar_file("2", ""), tar_file("3", ""), tar_file("4", "")});
  CHECK(error_of(r) == "layer L: has more than 3 entries (limit)");
}

TEST_CASE("unpack verifies the blob digest while reading", "[image]") {
  Tree t;
  std::string tar = t.scratch / "l.tar";
  write_tar(tar, {tar_file("a", "hello")});
  std::string good = sha256_file(tar)->digest;
  REQUIRE(t.apply_file(tar, good));
  std::string bytes = slurp(tar);
  bytes[bytes.find("hello")] = 'j';
  spit(tar, bytes);
  std::string bad = sha256_file(tar)->digest;
  Tree t2;
  CHECK(error_of(t2.apply_file(tar, good)) == "layer L: digest mismatch (got " + bad + ")");
}

TEST_CASE("unpack applies whiteouts and opaque directories across layers", "[image]") {
  Tree t;
  REQUIRE(t.apply({tar_dir("etc"), tar_file("etc/keep", "k"), tar_file("etc/gone", "g"), tar_dir("etc/sub"), tar_file("etc/sub/f", "f"),
                   tar_dir("opq"), tar_file("opq/lower1", "1"), tar_dir("opq/d"), tar_file("opq/d/lower2", "2")}));
  REQUIRE(t.apply({tar_file("etc/.wh.gone", ""), tar_file("etc/.wh.sub", ""), tar_dir("opq"), tar_file("opq/new_before", "b"),
                   tar_file("opq/.wh..wh..opq", ""), tar_file("opq/new_after", "a"), tar_dir("opq/d"), tar_file("opq/d/new", "n"),
                   tar_file("missing/.wh.nothing", "")}));
  CHECK(slurp(t.at("etc/keep")) == "k");
  CHECK_FALSE(exists_nofollow(t.at("etc/gone")));
  CHECK_FALSE(exists_nofollow(t.at("etc/sub")));
  CHECK_FALSE(exists_nofollow(t.at("etc/.wh.gone")));
  CHECK_FALSE(exists_nofollow(t.at("opq/lower1")));
  CHECK_FALSE(exists_nofollow(t.at("opq/d/lower2")));
  CHECK_FALSE(exists_nofollow(t.at("opq/.wh..wh..opq")));
  CHECK(slurp(t.at("opq/new_before")) == "b");
  CHECK(slurp(t.at("opq/new_after")) == "a");
  CHECK(slurp(t.at("opq/d/new")) == "n");
}

TEST_CASE("unpack keeps links, devices, modes, owners, times and xattrs", "[image]") {
  if (geteuid() != 0) {
    WARN("skipped: needs root for ownership and device nodes");
    return;
  }
  Tree t;
  TarMember suid = tar_file("bin/su", "#!", 04755);
  suid.uid = 1000;
  suid.gid = 1000;
  suid.xattrs["user.test"] = "value";
  suid.xattrs["security.selinux"] = "dropped";
  TarMember null_dev;
  null_dev.name = "dev/null";
  null_dev.type = 'c';
  null_dev.mode = 0666;
  null_dev.dev_major = 1;
  null_dev.dev_minor = 3;
  TarMember fifo;
  fifo.name = "run/fifo";
  fifo.type = 'p';
  fifo.mode = 0600;
  TarMember ro = tar_dir("ro", 0555);
  REQUIRE(t.apply({tar_dir("bin"), suid, tar_hardlink("bin/su2", "bin/su"), tar_symlink("bin/sh", "busybox"), tar_dir("dev"),
                   null_dev, tar_dir("run"), fifo, ro, tar_file("ro/f", "x")}));
  struct stat st {};
  REQUIRE(lstat(t.at("bin/su").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 04755);
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 1000);
  CHECK(st.st_mtime == 1700000000);
  CHECK(st.st_nlink == 2);
  struct stat st2 {};
  REQUIRE(lstat(t.at("bin/su2").c_str(), &st2) == 0);
  CHECK(st2.st_ino == st.st_ino);
  char value[64] = {};
  CHECK(lgetxattr(t.at("bin/su").c_str(), "user.test", value, sizeof value) == 5);
  CHECK(std::string(value) == "value");
  CHECK(lgetxattr(t.at("bin/su").c_str(), "security.selinux", value, sizeof value) < 0);
  char target[64] = {};
  CHECK(readlink(t.at("bin/sh").c_str(), target, sizeof target) == 7);
  REQUIRE(lstat(t.at("dev/null").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));
  CHECK((st.st_mode & 0777) == 0666);
  REQUIRE(lstat(t.at("run/fifo").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  REQUIRE(lstat(t.at("ro").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0555);
  CHECK(st.st_mtime == 1700000000);  // set after its contents
  CHECK(t.state.stats.bytes == 3);
}

TEST_CASE("unpack reads zstd and gzip layers as well as plain ones", "[image]") {
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    Tree t;
    std::string layer = t.scratch / "layer.tar.any";
    write_tar(layer, {tar_dir("etc"), tar_file("etc/hello", "compressed or not\n")}, c);
    const std::string head = slurp(layer).substr(0, 4);
    if (c == Compression::kZstd) CHECK(head == std::string("\x28\xb5\x2f\xfd", 4));  // really zstd
    if (c == Compression::kGzip) CHECK(head.substr(0, 2) == std::string("\x1f\x8b", 2));
    auto r = t.apply_file(layer);
    INFO(static_cast<int>(c) << ": " << error_of(r));
    REQUIRE(r);
    CHECK(slurp(t.at("etc/hello")) == "compressed or not\n");
  }
}
