#include <catch2/catch.hpp>

#include "vmm/agent/mailbox.h"

using namespace vicvmm;

TEST_CASE("mailbox round-trips a request") {
  AgentRequest req;
  req.argv = {"/bin/sh", "-c", "echo hi; exit 3"};
  req.env = {"A=1", "PATH=/bin"};
  req.hostname = "clone-7";
  req.clone_id = 7;
  req.seed = {1, 2, 3, 4};
  req.flags = VIC_MB_CHANNEL_PORT;
  auto mb = build_mailbox(req);
  REQUIRE(mb);
  CHECK(mb->magic == VIC_MAILBOX_MAGIC);
  auto back = parse_mailbox(*mb);
  REQUIRE(back);
  CHECK(back->argv == req.argv);
  CHECK(back->env == req.env);
  CHECK(back->hostname == "clone-7");
  CHECK(back->clone_id == 7);
  CHECK(back->seed[3] == 4);
  CHECK(back->flags == VIC_MB_CHANNEL_PORT);
}

TEST_CASE("mailbox rejects what does not fit or is malformed") {
  AgentRequest big;
  big.argv = {std::string(5000, 'x')};
  auto r = build_mailbox(big);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("exceed") != std::string::npos);

  AgentRequest nul;
  nul.argv = {std::string("a\0b", 3)};
  CHECK_FALSE(build_mailbox(nul));

  AgentRequest badenv;
  badenv.env = {"NOEQUALS"};
  CHECK_FALSE(build_mailbox(badenv));

  auto mb = build_mailbox(AgentRequest{{"/bin/true"}, {}, "h"});
  REQUIRE(mb);
  vic_mailbox bad = *mb;
  bad.magic = 0;
  CHECK_FALSE(parse_mailbox(bad));
  bad = *mb;
  bad.argc = 1000;  // more strings than bytes
  CHECK_FALSE(parse_mailbox(bad));
  bad = *mb;
  bad.strings_len = 5;  // cuts "/bin/true" before its NUL
  CHECK_FALSE(parse_mailbox(bad));
  bad = *mb;
  bad.strings_len = 0xffffffff;
  CHECK_FALSE(parse_mailbox(bad));
}
