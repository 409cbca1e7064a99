#include <string>

#include "tests/unit/test_helpers.h"
#include "vmm/boot/cmdline.h"

using namespace vicvmm::boot;
using vicvmm::test::error_of;

TEST_CASE("cmdline: words are appended in order", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append("console=ttyS0  reboot=k"));
  REQUIRE(c.append("\tquiet "));
  CHECK(c.render() == "console=ttyS0 reboot=k quiet");
  CHECK(c.length() == c.render().size());
}

TEST_CASE("cmdline: append_if_absent matches by key or bare word", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append("console=hvc0 quiet"));
  REQUIRE(c.append_if_absent("console=ttyS0 panic=1 quiet noapic"));
  CHECK(c.render() == "console=hvc0 quiet panic=1 noapic");
  CHECK(c.contains_key("console"));
  CHECK(c.contains_key("console="));
  CHECK(c.contains_key("noapic"));
  CHECK_FALSE(c.contains_key("cons"));
  CHECK_FALSE(c.contains_key("init"));
}

TEST_CASE("cmdline: init arguments always render last", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append("console=ttyS0 -- --verbose run"));
  REQUIRE(c.append("panic=1"));
  REQUIRE(c.append_init_args("now"));
  CHECK(c.render() == "console=ttyS0 panic=1 -- --verbose run now");
  // Init arguments are not kernel words.
  CHECK_FALSE(c.contains_key("--verbose"));
  REQUIRE(c.append_if_absent("run"));
  CHECK(c.render() == "console=ttyS0 panic=1 run -- --verbose run now");
}

TEST_CASE("cmdline: only init arguments", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append_init_args("a b"));
  CHECK(c.render() == "-- a b");
  CHECK(Cmdline{}.render().empty());
}

TEST_CASE("cmdline: double quotes keep spaces inside a word", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append(R"(dyndbg="file foo.c +p" quiet)"));
  CHECK(c.render() == R"(dyndbg="file foo.c +p" quiet)");
  CHECK(c.contains_key("dyndbg"));
  CHECK_THAT(error_of(c.append(R"(bad="unterminated)")), Catch::Contains("unterminated quote"));
}

TEST_CASE("cmdline: the 2047-byte limit is exact", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append(std::string(2047, 'x')));
  CHECK(c.length() == 2047);

  Cmdline d;
  auto r = d.append(std::string(2048, 'x'));
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("2048 bytes exceeds the 2047-byte limit"));

  Cmdline e;
  REQUIRE(e.append(std::string(2046, 'x')));
  // " y" would make 2048: refused, and nothing changes.
  CHECK_THAT(error_of(e.append("y")), Catch::Contains("exceeds"));
  CHECK_THAT(error_of(e.append_if_absent("y")), Catch::Contains("exceeds"));
  CHECK_THAT(error_of(e.append_init_args("y")), Catch::Contains("exceeds"));
  CHECK(e.length() == 2046);
}

TEST_CASE("cmdline: NUL and newlines are rejected and leave it unchanged", "[cmdline]") {
  Cmdline c;
  REQUIRE(c.append("a"));
  CHECK_THAT(error_of(c.append(std::string("b\0c", 3))), Catch::Contains("NUL"));
  CHECK_THAT(error_of(c.append("b\nc")), Catch::Contains("newline"));
  CHECK_THAT(error_of(c.append("b\rc")), Catch::Contains("newline"));
  CHECK_THAT(error_of(c.append_init_args("x\ny")), Catch::Contains("newline"));
  CHECK_THAT(error_of(c.append_if_absent("--")), Catch::Contains("--"));
  CHECK(c.render() == "a");
}
