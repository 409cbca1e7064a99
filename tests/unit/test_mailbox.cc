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
  CHECK(mb->page.magic == VIC_MAILBOX_MAGIC);
  CHECK(mb->ext.empty());
  auto back = parse_mailbox(mb->page);
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
  big.argv = {std::string(VIC_MAILBOX_EXT_SIZE, 'x')};
  auto r = build_mailbox(big);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("exceed 128 KiB") != std::string::npos);

  AgentRequest nul;
  nul.argv = {std::string("a\0b", 3)};
  CHECK_FALSE(build_mailbox(nul));

  AgentRequest badenv;
  badenv.env = {"NOEQUALS"};
  CHECK_FALSE(build_mailbox(badenv));

  auto mb = build_mailbox(AgentRequest{{"/bin/true"}, {}, "h"});
  REQUIRE(mb);
  vic_mailbox bad = mb->page;
  bad.magic = 0;
  CHECK_FALSE(parse_mailbox(bad));
  bad = mb->page;
  bad.argc = 1000;  // more strings than bytes
  CHECK_FALSE(parse_mailbox(bad));
  bad = mb->page;
  bad.strings_len = 5;  // cuts "/bin/true" before its NUL
  CHECK_FALSE(parse_mailbox(bad));
  bad = mb->page;
  bad.strings_len = 0xffffffff;
  CHECK_FALSE(parse_mailbox(bad));
}

TEST_CASE("mailbox moves strings that outgrow the page to the extension area") {
  AgentRequest req;
  req.argv = {"/usr/bin/env"};
  for (int i = 0; i < 300; ++i) req.env.push_back("VAR" + std::to_string(i) + "=" + std::string(100, 'v'));
  req.hostname = "h";
  req.workdir = "/srv/app";
  req.user = "nobody:nogroup";
  req.flags = VIC_MB_IMAGE_ROOT;
  auto mb = build_mailbox(req);
  REQUIRE(mb);
  CHECK((mb->page.flags & VIC_MB_EXT_STRINGS) != 0);
  CHECK((mb->page.flags & VIC_MB_IMAGE_ROOT) != 0);
  CHECK(mb->ext.size() == mb->page.strings_len);
  CHECK(mb->ext.size() > sizeof(mb->page.strings));
  auto back = parse_mailbox(mb->page, mb->ext);
  REQUIRE(back);
  CHECK(back->env == req.env);
  CHECK(back->workdir == "/srv/app");
  CHECK(back->user == "nobody:nogroup");
  // Without the extension's bytes the page alone does not parse.
  CHECK_FALSE(parse_mailbox(mb->page));
}

TEST_CASE("mailbox: working directory and user are optional trailing strings") {
  auto mb = build_mailbox(AgentRequest{{"/bin/true"}, {"A=1"}, "h"});
  REQUIRE(mb);
  auto back = parse_mailbox(mb->page);
  REQUIRE(back);
  CHECK(back->workdir.empty());
  CHECK(back->user.empty());
  AgentRequest with_user{{"id"}, {}, "h", "", "1000:1000"};
  auto mb2 = build_mailbox(with_user);
  REQUIRE(mb2);
  auto back2 = parse_mailbox(mb2->page);
  REQUIRE(back2);
  CHECK(back2->workdir.empty());
  CHECK(back2->user == "1000:1000");
}
