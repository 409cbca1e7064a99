// The image store (image/store.h): import, load (docker-archive and OCI
// layouts, directories and tars of them), tags, removal, EROFS disks; and
// that a refused input leaves the store exactly as it was.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "image/digest.h"
#include "image/records.h"
#include "image/store.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_helpers.h"

using namespace vicvmm;
using namespace vicvmm::image;
using namespace vicvmm::test;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

// Every file under `dir`, relative ("blobs/sha256/ab..").
std::set<std::string> files_under(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    if (!it->is_directory()) out.insert(std::filesystem::relative(it->path(), dir).string());
  return out;
}

std::string config_for(const std::vector<std::string>& diff_ids) {
  json c = {{"architecture", "amd64"},
            {"os", "linux"},
            {"created", "2024-01-02T03:04:05Z"},
            {"config", {{"Cmd", {"/bin/sh"}}, {"Env", {"A=1"}}, {"WorkingDir", "/w"}, {"ExposedPorts", {{"80/tcp", json::object()}}}}},
            {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  return c.dump();
}

// A docker-archive directory with the given layer tars; returns its path.
std::string docker_archive(const ScratchDir& s, const std::vector<std::string>& layer_tars,
                           std::vector<std::string> diff_ids = {}) {
  std::string d = s / "docker";
  std::filesystem::create_directories(d);
  json layers = json::array();
  for (size_t i = 0; i < layer_tars.size(); ++i) {
    std::string name = "l" + std::to_string(i) + "/layer.tar";
    std::filesystem::create_directories(d + "/l" + std::to_string(i));
    std::filesystem::copy_file(layer_tars[i], d + "/" + name);
    layers.push_back(name);
    if (diff_ids.size() <= i) diff_ids.push_back(sha256_file(layer_tars[i])->digest);
  }
  spit(d + "/config.json", config_for(diff_ids));
  json m = json::array({{{"Config", "config.json"}, {"RepoTags", {"demo:1"}}, {"Layers", layers}}});
  spit(d + "/manifest.json", m.dump());
  return d;
}

std::string blob(const std::string& layout, const std::string& data) {
  std::string digest = sha256_of(data);
  spit(layout + "/blobs/sha256/" + digest.substr(7), data);
  return digest;
}

// An OCI layout directory; `tamper` may change it before it is used.
std::string oci_layout(const ScratchDir& s, const std::string& layer_tar, const std::string& ref_name) {
  std::string d = s / "oci";
  std::filesystem::create_directories(d + "/blobs/sha256");
  spit(d + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  std::string layer = slurp(layer_tar);
  std::string layer_digest = blob(d, layer);
  std::string config = config_for({layer_digest});
  std::string config_digest = blob(d, config);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", config_digest}, {"size", config.size()}}},
                   {"layers", json::array({{{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", layer_digest}, {"size", layer.size()}}})}};
  std::string m = manifest.dump();
  std::string m_digest = blob(d, m);
  json index = {{"schemaVersion", 2},
                {"manifests", json::array({{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                            {"digest", m_digest},
                                            {"size", m.size()},
                                            {"annotations", {{"org.opencontainers.image.ref.name", ref_name}}}}})}};
  spit(d + "/index.json", index.dump());
  return d;
}

// Tars up a directory's contents (the way `tar -C DIR -cf OUT .` would).
void tar_directory(const std::string& dir, const std::string& out) {
  std::vector<TarMember> members;
  for (auto it = std::filesystem::recursive_directory_iterator(dir); it != std::filesystem::recursive_directory_iterator(); ++it) {
    std::string rel = std::filesystem::relative(it->path(), dir).string();
    members.push_back(it->is_directory() ? tar_dir(rel) : tar_file(rel, slurp(it->path().string())));
  }
  write_tar(out, members);
}

struct StoreFixture {
  ScratchDir scratch;
  Store store;
  explicit StoreFixture(Limits limits = {}) : store(*Store::open(scratch / "store", limits)) {}
  std::set<std::string> contents() const { return files_under(store.root()); }
};

}  // namespace

TEST_CASE("image store: import, resolve, tag, list, remove", "[image]") {
  StoreFixture f;
  std::string rootfs = f.scratch / "rootfs";
  std::filesystem::create_directories(rootfs + "/bin");
  spit(rootfs + "/bin/hello", "hi");
  auto img = f.store.import_rootfs(rootfs, "hello");
  REQUIRE(img);
  CHECK(img->tags == std::vector<std::string>{"hello:latest"});
  CHECK(img->layers.size() == 1);
  CHECK(img->layers[0].digest == img->layers[0].diff_id);
  CHECK(img->architecture == "amd64");
  CHECK(img->config.env == std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});

  CHECK(f.store.resolve("hello")->id == img->id);
  CHECK(f.store.resolve("hello:latest")->id == img->id);
  CHECK(f.store.resolve(img->id.substr(0, 6))->id == img->id);
  CHECK(f.store.resolve("sha256:" + img->id)->id == img->id);
  CHECK(error_of(f.store.resolve("nope")) == "image nope: no such image");
  CHECK(error_of(f.store.tag("hello", "Bad Name")) == "image name 'Bad Name': invalid character ' '");

  REQUIRE(f.store.tag("hello", "other:v2"));
  auto list = f.store.list();
  REQUIRE(list);
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].tags == std::vector<std::string>{"hello:latest", "other:v2"});

  auto used = [](const Image&) -> std::optional<std::string> { return "template web"; };
  REQUIRE(f.store.remove("other:v2", used));  // another tag remains: only untagged
  CHECK(f.store.resolve("hello")->tags == std::vector<std::string>{"hello:latest"});
  CHECK(error_of(f.store.remove("hello", used)) == "image hello is in use by template web");
  REQUIRE(f.store.remove("hello", nullptr));
  CHECK(f.store.list()->empty());
  auto left = f.contents();
  CHECK(left == std::set<std::string>{"lock", "tags.json"});
}

TEST_CASE("image store: import a compressed tar and build its EROFS disk", "[image]") {
  StoreFixture f;
  std::string tgz = f.scratch / "rootfs.tar.gz";
  write_tar(tgz, {tar_dir("etc"), tar_file("etc/os-release", "ID=test\n"), tar_symlink("etc/link", "os-release")}, true);
  auto img = f.store.import_rootfs(tgz, "tiny:1");
  REQUIRE(img);
  auto disk = f.store.erofs_disk(*img);
  REQUIRE(disk);
  CHECK(*disk == f.store.root() + "/erofs/" + img->id + ".erofs");
  CHECK(f.store.resolve("tiny:1")->erofs_size > 0);
  CHECK(*f.store.erofs_disk(*img) == *disk);  // cached
  CHECK(count_entries(f.store.root() + "/tmp") == 0);

  CHECK_THAT(error_of(f.store.import_rootfs(f.scratch / "missing.tar", "x")), Contains("missing.tar"));
  spit(f.scratch / "not.tar", std::string(5000, 'z'));
  CHECK_THAT(error_of(f.store.import_rootfs(f.scratch / "not.tar", "x")), Contains("not a tar archive"));
}

TEST_CASE("image store: a flipped byte in a stored layer is caught when the disk is built", "[image]") {
  StoreFixture f;
  std::string tar = f.scratch / "l.tar";
  write_tar(tar, {tar_file("data", std::string(4096, 'd'))});
  auto img = f.store.import_rootfs(tar, "flip");
  REQUIRE(img);
  std::string blob_path = f.store.root() + "/blobs/sha256/" + img->layers[0].digest.substr(7);
  std::string bytes = slurp(blob_path);
  bytes[bytes.find('d')] = 'e';
  spit(blob_path, bytes);
  auto disk = f.store.erofs_disk(*img);
  CHECK(error_of(disk) == "image " + img->id.substr(0, 12) + ": layer " + img->layers[0].digest +
                              ": digest mismatch (got " + sha256_of(bytes) + ")");
  CHECK(count_entries(f.store.root() + "/tmp") == 0);
  CHECK(count_entries(f.store.root() + "/erofs") == 1);  // only the build lock
}

TEST_CASE("image store: a bomb is refused when the disk is built, nothing left behind", "[image]") {
  Limits small;
  small.max_unpacked_bytes = 1 << 20;
  StoreFixture f(small);
  std::string tar = f.scratch / "bomb.tar.gz";
  write_tar(tar, {tar_file("a", std::string(700 << 10, 0)), tar_file("b", std::string(700 << 10, 0))}, true);
  // Import decompresses: the limit already holds there.
  CHECK(error_of(f.store.import_rootfs(tar, "bomb")) ==
        "image import " + tar + ": unpacks to more than 1048576 bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)");
  CHECK(count_entries(f.store.root() + "/tmp") == 0);
  CHECK(count_entries(f.store.root() + "/blobs/sha256") == 0);

  // A gzip layer in a docker-archive: load checks its diff_id (decompressing
  // under the limit).
  std::string dir_path = docker_archive(f.scratch, {tar}, {sha256_of("whatever")});
  auto r = f.store.load(dir_path);
  CHECK(error_of(r) == "image load " + dir_path + ": layer " + sha256_file(tar)->digest.substr(0, 19) +
                           " (l0/layer.tar): unpacks to more than 1048576 bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)");
  CHECK(count_entries(f.store.root() + "/blobs/sha256") == 0);
  CHECK(count_entries(f.store.root() + "/tmp") == 0);
}

TEST_CASE("image store: docker-archive directory and tar, with diff_id checks", "[image]") {
  StoreFixture f;
  std::string l0 = f.scratch / "l0.tar", l1 = f.scratch / "l1.tar";
  write_tar(l0, {tar_dir("etc"), tar_file("etc/a", "a"), tar_file("etc/b", "b")});
  std::vector<TarMember> top = {tar_file("etc/.wh.a", ""), tar_file("etc/c", "c")};
  write_tar(l1, top);
  std::string l1_diff_id = sha256_file(l1)->digest;
  write_tar(l1, top, /*gzip=*/true);
  std::string d = docker_archive(f.scratch, {l0, l1}, {sha256_file(l0)->digest, l1_diff_id});
  std::string archive = f.scratch / "demo.tar";
  tar_directory(d, archive);
  auto images = f.store.load(archive);
  REQUIRE(images);
  REQUIRE(images->size() == 1);
  const Image& img = (*images)[0];
  CHECK(img.tags == std::vector<std::string>{"demo:1"});
  CHECK(img.config.cmd == std::vector<std::string>{"/bin/sh"});
  CHECK(img.config.working_dir == "/w");
  CHECK(img.config.exposed_ports == std::vector<std::string>{"80/tcp"});
  REQUIRE(img.layers.size() == 2);
  CHECK(img.layers[1].media_type == "application/vnd.oci.image.layer.v1.tar+gzip");
  CHECK(img.layers[1].diff_id == l1_diff_id);
  REQUIRE(f.store.erofs_disk(img));
  CHECK(count_entries(f.store.root() + "/tmp") == 0);

  // Loading the same directory again is idempotent.
  REQUIRE(f.store.load(d));
  CHECK(f.store.list()->size() == 1);

  // A diff_id that does not match: refused, nothing added.
  StoreFixture g;
  ScratchDir s2;
  std::string bad = docker_archive(s2, {l0}, {sha256_of("not the layer")});
  auto before = g.contents();
  auto r = g.store.load(bad);
  CHECK_THAT(error_of(r), Contains("(l0/layer.tar): diff_id mismatch (config says " + sha256_of("not the layer")));
  CHECK(g.contents() == before);
}

TEST_CASE("image store: OCI layout with bare tag, digest and size checks", "[image]") {
  StoreFixture f;
  std::string l0 = f.scratch / "l0.tar";
  write_tar(l0, {tar_file("hello", "world")});
  std::string d = oci_layout(f.scratch, l0, "v1");
  auto images = f.store.load(d);
  REQUIRE(images);
  REQUIRE(images->size() == 1);
  CHECK((*images)[0].tags == std::vector<std::string>{"oci:v1"});  // name from the directory

  // A tampered layer blob (same size, other content).
  StoreFixture g;
  ScratchDir s2;
  std::string d2 = oci_layout(s2, l0, "myrepo:v2");
  std::string layer_digest = sha256_file(l0)->digest;
  std::string path = d2 + "/blobs/sha256/" + layer_digest.substr(7);
  std::string bytes = slurp(path);
  bytes[bytes.find("world")] = 'W';
  spit(path, bytes);
  auto before = g.contents();
  CHECK(error_of(g.store.load(d2)) == "image load " + d2 + ": layer " + layer_digest + ": digest mismatch (got " +
                                          sha256_of(bytes) + ")");
  CHECK(g.contents() == before);
}

TEST_CASE("image store: hostile outer archives are refused", "[image]") {
  StoreFixture f;
  auto before = f.contents();
  std::string evil = f.scratch / "evil.tar";
  write_tar(evil, {tar_file("manifest.json", "[]"), tar_file("../../escape", "x")});
  CHECK(error_of(f.store.load(evil)) == "image load " + evil + ": member ../../escape: path climbs out with '..'");
  write_tar(evil, {tar_symlink("manifest.json", "/etc/passwd")});
  CHECK(error_of(f.store.load(evil)) ==
        "image load " + evil + ": member manifest.json: symlink to /etc/passwd points outside the archive");
  write_tar(evil, {tar_file("index.json", "{}")});
  CHECK_THAT(error_of(f.store.load(evil)), Contains("neither a docker-archive"));
  spit(evil, "not an archive at all");
  CHECK_THAT(error_of(f.store.load(evil)), Contains("not a tar archive or an image directory"));
  write_tar(evil, {tar_file("manifest.json", std::string(9 << 20, ' '))});
  CHECK_THAT(error_of(f.store.load(evil)), Contains("manifest.json: larger than 8388608 bytes"));
  CHECK(f.contents() == before);
  CHECK(count_entries(f.store.root() + "/tmp") == 0);
}

TEST_CASE("image names: Docker Hub's spellings normalize to one name, and normalizing twice changes nothing",
          "[image]") {
  using vicvmm::image::normalize_tag;
  for (const char* in : {"busybox", "busybox:latest", "docker.io/busybox", "docker.io/library/busybox:latest",
                         "docker.io/docker.io/busybox", "docker.io/library/docker.io/library/busybox"}) {
    auto once = normalize_tag(in);
    REQUIRE(once);
    CHECK(*once == "busybox:latest");
    auto twice = normalize_tag(*once);
    REQUIRE(twice);
    CHECK(*twice == *once);
  }
  CHECK(*normalize_tag("quay.io/x/y:1") == "quay.io/x/y:1");
  CHECK_FALSE(normalize_tag("docker.io/"));
}
