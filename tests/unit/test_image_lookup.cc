// serve's ImageLookup: answers kept between creates, given again only while
// the store's and the templates' files are as they were.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "serve/image_lookup.h"
#include "tests/unit/image_test_util.h"

using namespace vicvmm;
using namespace vicvmm::test;
using vicvmm::serve::ImageLookup;

namespace {

// Short enough for a test, longer than the kernel's coarse clock tick.
constexpr int64_t kWindowNs = 50'000'000;
// Lets the files written so far age past the window, so that their stamps
// are trusted (and a second change in the same clock tick cannot hide).
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(60)); }

struct Fixture {
  ScratchDir scratch;
  image::Store store = *image::Store::open(scratch / "store");
  std::string templates = scratch / "templates";

  // A one-layer image whose only file holds `text` (distinct text, distinct image).
  std::string import(const std::string& text, const std::string& tag) {
    std::string rootfs = scratch / ("rootfs-" + text);
    std::filesystem::create_directories(rootfs);
    spit(rootfs + "/file", text);
    auto img = store.import_rootfs(rootfs, tag);
    REQUIRE(img);
    return img->id;
  }
  // A template directory as `vicvmm template create --image` leaves it.
  void make_template(const std::string& name, const std::string& image_id, bool with_state = true) {
    std::filesystem::create_directories(templates + "/" + name);
    spit(templates + "/" + name + "/image", image_id + "\n");
    if (with_state) spit(templates + "/" + name + "/state.bin", "x");
  }
};

}  // namespace

TEST_CASE("image lookup: kept answers follow the store's changes", "[serve]") {
  Fixture f;
  const std::string a = f.import("a", "app");
  ImageLookup lookup(f.store, f.templates, kWindowNs);
  settle();

  REQUIRE((*lookup.resolve("app"))->id == a);
  CHECK(lookup.hits() == 0);
  CHECK((*lookup.resolve("app"))->id == a);
  CHECK(lookup.hits() == 1);
  CHECK((*lookup.resolve(a.substr(0, 8)))->id == a);  // another reference: read afresh
  CHECK(lookup.hits() == 1);

  // The tag moves to another image (tags.json replaced): the new answer.
  const std::string b = f.import("b", "app");
  REQUIRE(b != a);
  settle();
  CHECK((*lookup.resolve("app"))->id == b);
  const uint64_t hits = lookup.hits();
  CHECK((*lookup.resolve("app"))->id == b);
  CHECK(lookup.hits() == hits + 1);

  // The id prefix that named one image may name two now: resolved again,
  // it is the store's own answer (an image c whose id shares a's first
  // digit is not guaranteed, so the check is that the answer is fresh).
  CHECK((*lookup.resolve(a.substr(0, 8)))->id == a);

  // The image is removed: no stale answer.
  REQUIRE(f.store.remove("app", nullptr));
  CHECK_FALSE(lookup.resolve("app"));
  CHECK_FALSE(lookup.resolve(b));
}

TEST_CASE("image lookup: templates of an image, as they come and go", "[serve]") {
  Fixture f;
  const std::string a = f.import("a", "app");
  const std::string b = f.import("b", "other");
  ImageLookup lookup(f.store, f.templates, kWindowNs);

  CHECK(lookup.template_of(a).empty());  // no templates directory at all
  f.make_template("base", "");           // the base template has no image
  CHECK(lookup.template_of(a).empty());
  f.make_template("t-a", a, /*with_state=*/false);  // being created: no state yet
  CHECK(lookup.template_of(a).empty());
  spit(f.templates + "/t-a/state.bin", "x");
  settle();
  CHECK(lookup.template_of(a) == f.templates + "/t-a");
  const uint64_t hits = lookup.hits();
  CHECK(lookup.template_of(a) == f.templates + "/t-a");
  CHECK(lookup.template_of(b).empty());
  CHECK(lookup.hits() == hits + 2);

  // Rewritten in place for another image (the image file replaced).
  spit(f.templates + "/t-a/image.tmp", b + "\n");
  std::filesystem::rename(f.templates + "/t-a/image.tmp", f.templates + "/t-a/image");
  CHECK(lookup.template_of(a).empty());
  CHECK(lookup.template_of(b) == f.templates + "/t-a");
  settle();
  std::filesystem::remove_all(f.templates + "/t-a");
  CHECK(lookup.template_of(b).empty());
}

TEST_CASE("image lookup: files changed within the racy window are read again", "[serve]") {
  Fixture f;
  f.import("a", "app");
  f.make_template("t", "");
  ImageLookup lookup(f.store, f.templates);  // the default window: a second
  settle();
  for (int i = 0; i < 3; i++) {
    REQUIRE(lookup.resolve("app"));
    (void)lookup.template_of("x");
  }
  CHECK(lookup.hits() == 0);  // everything here was written under a second ago
}
