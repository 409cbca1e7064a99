#include <catch2/catch.hpp>

#include "tools/vicvmm/options.h"

using vicvmm::cli::parse_size;

TEST_CASE("sizes parse with binary units") {
  CHECK(*parse_size("128M") == 128ull << 20);
  CHECK(*parse_size("1G") == 1ull << 30);
  CHECK(*parse_size("2GiB") == 2ull << 30);
  CHECK(*parse_size("512k") == 512ull << 10);
  CHECK(*parse_size("4096") == 4096);
}

TEST_CASE("bad sizes are errors naming the text") {
  for (const char* bad : {"", "M", "12Q", "-5M", "1.5G", "99999999999999999999", "18446744073709551615G"}) {
    auto r = parse_size(bad);
    CAPTURE(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("size") != std::string::npos);
  }
}

TEST_CASE("the console limit defaults to 64M for a file and to none for stdout") {
  using vicvmm::cli::parse_console_limit;
  CHECK(*parse_console_limit("/tmp/console.log", "") == vicvmm::cli::kDefaultConsoleFileLimit);
  CHECK(*parse_console_limit("stdout", "") == 0);
  CHECK(*parse_console_limit("none", "") == 0);
  CHECK(*parse_console_limit("stdout", "1K") == 1024);
  CHECK(*parse_console_limit("/tmp/console.log", "0") == 0);
  auto bad = parse_console_limit("/tmp/console.log", "lots");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("--console-limit") != std::string::npos);
}
