// `vicvmm image ...` end to end with the real tools that make images:
// umoci builds an OCI layout with two layers (the second deletes a file, a
// whiteout), skopeo converts it to a docker-archive, and vicvmm loads both,
// lists, inspects, tags, builds the EROFS disk (checked with fsck.erofs
// --extract) and removes. The store lives in a temp XDG_STATE_HOME.
#define CATCH_CONFIG_MAIN
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/subprocess.h"

using namespace vicvmm::test;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
namespace fs = std::filesystem;

namespace {

Outcome run_ok(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
               const std::string& stdin_path = "/dev/null") {
  Outcome o = run_process(argv, env, stdin_path);
  INFO("command: " << argv[0] << (argv.size() > 1 ? " " + argv[1] : "") << (argv.size() > 2 ? " " + argv[2] : ""));
  INFO("stdout: " << o.out << "\nstderr: " << o.err);
  REQUIRE(o.status == 0);
  return o;
}

// The one-line error contract of every vicvmm failure.
std::string expect_error(const Outcome& o) {
  INFO("stdout: " << o.out << "\nstderr: " << o.err);
  CHECK(o.status == 125);
  CHECK(std::count(o.err.begin(), o.err.end(), '\n') == 1);
  CHECK_THAT(o.err, StartsWith("vicvmm: error: "));
  return o.err;
}

}  // namespace

TEST_CASE("image load/ls/inspect/tag/disk/rm with umoci and skopeo images", "[image][cli]") {
  std::string umoci = which("umoci"), skopeo = which("skopeo"), fsck = which("fsck.erofs"), tar = which("tar");
  if (umoci.empty() || skopeo.empty() || fsck.empty() || tar.empty()) {
    WARN("skipped: needs umoci, skopeo, fsck.erofs and tar (tools/setup installs them)");
    return;
  }
  ScratchDir s;
  std::string vicvmm = vicvmm_bin();
  std::vector<std::string> env = {"XDG_STATE_HOME=" + s.path + "/state", "VICVMM_IMAGE_MAX_SIZE="};
  auto vic = [&](std::vector<std::string> args, const std::string& stdin_path = "/dev/null") {
    args.insert(args.begin(), vicvmm);
    return run_process(args, env, stdin_path);
  };

  // Two layers: the first adds etc/greeting, etc/old and bin/tool; the
  // second deletes etc/old (a whiteout) and adds etc/two.
  std::string layout = s.path + "/webapp", bundle = s.path + "/bundle";
  run_ok({umoci, "init", "--layout", layout});
  run_ok({umoci, "new", "--image", layout + ":v1"});
  run_ok({umoci, "unpack", "--image", layout + ":v1", bundle});
  fs::create_directories(bundle + "/rootfs/etc");
  fs::create_directories(bundle + "/rootfs/bin");
  std::ofstream(bundle + "/rootfs/etc/greeting") << "hello\n";
  std::ofstream(bundle + "/rootfs/etc/old") << "to be deleted\n";
  std::ofstream(bundle + "/rootfs/bin/tool") << "#!/bin/sh\necho tool\n";
  fs::permissions(bundle + "/rootfs/bin/tool", fs::perms(0755));
  run_ok({umoci, "repack", "--image", layout + ":v1", bundle});
  fs::remove_all(bundle);
  run_ok({umoci, "unpack", "--image", layout + ":v1", bundle});
  fs::remove(bundle + "/rootfs/etc/old");
  std::ofstream(bundle + "/rootfs/etc/two") << "second layer\n";
  run_ok({umoci, "repack", "--image", layout + ":v1", bundle});
  run_ok({umoci, "config", "--image", layout + ":v1", "--config.cmd", "/bin/tool", "--config.workingdir", "/etc"});

  std::string docker_tar = s.path + "/demo.tar";
  run_ok({skopeo, "copy", "oci:" + layout + ":v1", "docker-archive:" + docker_tar + ":demo:v1"});
  std::string layout_tar = s.path + "/layout.tar";
  run_ok({tar, "-C", layout, "-cf", layout_tar, "."});

  // The OCI layout directory: umoci names only the tag, the name comes from the directory.
  Outcome o = vic({"image", "load", layout});
  REQUIRE(o.status == 0);
  CHECK(o.out == "Loaded image: webapp:v1\n");
  o = vic({"image", "load", docker_tar});
  REQUIRE(o.status == 0);
  CHECK(o.out == "Loaded image: demo:v1\n");
  o = vic({"image", "load", "-"}, layout_tar);  // a tar of the layout on stdin
  REQUIRE(o.status == 0);
  CHECK(o.out == "Loaded image: image:v1\n");

  o = vic({"image", "ls"});
  REQUIRE(o.status == 0);
  CHECK_THAT(o.out, StartsWith("REPOSITORY"));
  CHECK_THAT(o.out, Contains("IMAGE ID") && Contains("USED BY") && Contains("demo") && Contains("webapp"));

  o = vic({"image", "inspect", "demo:v1"});
  REQUIRE(o.status == 0);
  auto j = nlohmann::json::parse(o.out, nullptr, false);
  REQUIRE(!j.is_discarded());
  REQUIRE(j["layers"].size() == 2);
  CHECK(j["config"]["Cmd"] == nlohmann::json::array({"/bin/tool"}));
  CHECK(j["config"]["WorkingDir"] == "/etc");
  CHECK(j["erofs"].is_null());
  std::string id = j["id"].get<std::string>().substr(7);
  REQUIRE(id.size() == 64);

  // The EROFS disk: whiteout applied, content and modes as built.
  o = vic({"image", "disk", "demo:v1"});
  REQUIRE(o.status == 0);
  std::string disk = o.out.substr(0, o.out.size() - 1);
  CHECK(disk == s.path + "/state/vicvmm/images/erofs/" + id + ".erofs");
  std::string extracted = s.path + "/extracted";
  run_ok({fsck, "--extract=" + extracted, disk});
  CHECK(slurp(extracted + "/etc/greeting") == "hello\n");
  CHECK(slurp(extracted + "/etc/two") == "second layer\n");
  CHECK_FALSE(fs::exists(extracted + "/etc/old"));
  CHECK((fs::status(extracted + "/bin/tool").permissions() & fs::perms::all) == fs::perms(0755));
  o = vic({"image", "inspect", "demo:v1"});
  CHECK(nlohmann::json::parse(o.out, nullptr, false)["erofs"]["path"] == disk);

  // The OCI layout and the docker-archive hold layers of the same content.
  o = vic({"image", "disk", "webapp:v1"});
  REQUIRE(o.status == 0);
  std::string extracted2 = s.path + "/extracted2";
  run_ok({fsck, "--extract=" + extracted2, o.out.substr(0, o.out.size() - 1)});
  CHECK(slurp(extracted2 + "/etc/two") == "second layer\n");
  CHECK_FALSE(fs::exists(extracted2 + "/etc/old"));

  REQUIRE(vic({"image", "tag", "demo:v1", "other:x"}).status == 0);
  CHECK_THAT(vic({"image", "ls"}).out, Contains("other"));
  CHECK_THAT(expect_error(vic({"image", "tag", "demo:v1", "Bad Name"})), Contains("invalid character"));

  // A template that uses the image keeps it.
  fs::create_directories(s.path + "/state/vicvmm/templates/t1");
  std::ofstream(s.path + "/state/vicvmm/templates/t1/image") << id << "\n";
  CHECK_THAT(vic({"image", "ls"}).out, Contains("template t1"));
  o = vic({"image", "rm", "other:x"});  // only a tag: the image stays
  CHECK(o.status == 0);
  CHECK(o.out == "Untagged: other:x\n");
  CHECK(expect_error(vic({"image", "rm", id.substr(0, 12)})) ==
        "vicvmm: error: image " + id.substr(0, 12) + " is in use by template t1\n");
  fs::remove_all(s.path + "/state/vicvmm/templates/t1");

  // Removing the remaining images leaves no blobs and no disks.
  o = vic({"image", "ls"});
  for (const std::string& ref : {std::string("demo:v1"), std::string("webapp:v1"), std::string("image:v1")}) {
    auto r = vic({"image", "rm", ref});
    if (r.status != 0) CHECK_THAT(r.err, Contains("no such image"));  // same id as an earlier one
  }
  o = vic({"image", "ls"});
  CHECK(std::count(o.out.begin(), o.out.end(), '\n') == 1);  // the header only
  CHECK(fs::is_empty(s.path + "/state/vicvmm/images/blobs/sha256"));
  CHECK(fs::is_empty(s.path + "/state/vicvmm/images/tmp"));

  // Errors: one line, exit 125.
  CHECK_THAT(expect_error(vic({"image", "load", s.path + "/missing.tar"})), Contains("missing.tar"));
  CHECK_THAT(expect_error(vic({"image", "load", "--max-size", "1K", docker_tar})),
             Contains("more than 1024 bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)"));
  CHECK_THAT(expect_error(vic({"image", "load", "--max-size", "lots", docker_tar})), Contains("--max-size"));
  CHECK_THAT(expect_error(vic({"image", "inspect", "nope"})), Contains("image nope: no such image"));
  CHECK(fs::is_empty(s.path + "/state/vicvmm/images/blobs/sha256"));
}

TEST_CASE("image import of a directory and a tar", "[image][cli]") {
  std::string fsck = which("fsck.erofs"), tar = which("tar");
  if (fsck.empty() || tar.empty()) {
    WARN("skipped: needs fsck.erofs and tar (tools/setup installs them)");
    return;
  }
  ScratchDir s;
  std::vector<std::string> env = {"XDG_STATE_HOME=" + s.path + "/state", "VICVMM_IMAGE_MAX_SIZE="};
  auto vic = [&](std::vector<std::string> args) {
    args.insert(args.begin(), vicvmm_bin());
    return run_process(args, env);
  };
  std::string rootfs = s.path + "/rootfs";
  fs::create_directories(rootfs + "/usr/bin");
  std::ofstream(rootfs + "/usr/bin/app") << "app";
  fs::create_hard_link(rootfs + "/usr/bin/app", rootfs + "/usr/bin/app2");
  fs::create_symlink("/usr/bin/app", rootfs + "/app");
  Outcome o = vic({"image", "import", rootfs, "rootfs:1"});
  REQUIRE(o.status == 0);
  CHECK_THAT(o.out, StartsWith("sha256:"));
  o = vic({"image", "disk", "rootfs:1"});
  REQUIRE(o.status == 0);
  std::string out = s.path + "/x";
  run_ok({fsck, "--extract=" + out, o.out.substr(0, o.out.size() - 1)});
  CHECK(slurp(out + "/usr/bin/app2") == "app");
  // fsck.erofs --extract copies hardlinks apart; the disk itself has one inode.
  std::string dump = which("dump.erofs");
  if (!dump.empty())
    CHECK_THAT(run_ok({dump, "--path=/usr/bin/app2", o.out.substr(0, o.out.size() - 1)}).out, Contains("Links: 2"));
  CHECK(fs::read_symlink(out + "/app") == "/usr/bin/app");
  CHECK((fs::status(out).permissions() & fs::perms::all) == fs::perms(0755));

  std::string tgz = s.path + "/rootfs.tar.gz";
  run_ok({tar, "-C", rootfs, "-czf", tgz, "."});
  o = vic({"image", "import", tgz, "fromtar"});
  REQUIRE(o.status == 0);
  o = vic({"image", "inspect", "fromtar:latest"});
  REQUIRE(o.status == 0);
  auto j = nlohmann::json::parse(o.out, nullptr, false);
  CHECK(j["layers"][0]["media_type"] == "application/vnd.oci.image.layer.v1.tar");
  CHECK(j["config"]["Env"][0] == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  CHECK_THAT(expect_error(vic({"image", "import", s.path + "/nothing", "x"})), Contains("nothing"));
}
