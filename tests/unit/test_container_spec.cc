#include <catch2/catch.hpp>

#include "image/container_spec.h"

using namespace vicvmm::image;

namespace {
RunConfig nginx_like() {
  RunConfig c;
  c.entrypoint = {"/docker-entrypoint.sh"};
  c.cmd = {"nginx", "-g", "daemon off;"};
  c.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.25"};
  c.working_dir = "/srv";
  c.user = "www-data";
  return c;
}
}  // namespace

TEST_CASE("process spec: the image's Entrypoint + Cmd, Env, WorkingDir and User by default") {
  auto p = process_spec("img", nginx_like(), {});
  REQUIRE(p);
  CHECK(p->argv == std::vector<std::string>{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"});
  CHECK(p->env == std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.25"});
  CHECK(p->workdir == "/srv");
  CHECK(p->user == "www-data");
}

TEST_CASE("process spec: arguments replace Cmd, not Entrypoint; --entrypoint drops Cmd") {
  Overrides o;
  o.cmd = {"nginx", "-t"};
  auto p = process_spec("img", nginx_like(), o);
  REQUIRE(p);
  CHECK(p->argv == std::vector<std::string>{"/docker-entrypoint.sh", "nginx", "-t"});

  Overrides ep;
  ep.entrypoint = std::vector<std::string>{"/bin/sh"};
  auto q = process_spec("img", nginx_like(), ep);
  REQUIRE(q);
  CHECK(q->argv == std::vector<std::string>{"/bin/sh"});

  Overrides cleared;
  cleared.entrypoint = std::vector<std::string>{};
  cleared.cmd = {"ls", "/"};
  auto r = process_spec("img", nginx_like(), cleared);
  REQUIRE(r);
  CHECK(r->argv == std::vector<std::string>{"ls", "/"});
}

TEST_CASE("process spec: -e replaces an image variable by key and adds new ones; PATH has a default") {
  Overrides o;
  o.env = {"NGINX_VERSION=2", "EXTRA=a=b", "NOVALUE"};
  auto p = process_spec("img", nginx_like(), o);
  REQUIRE(p);
  CHECK(p->env == std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=2", "EXTRA=a=b"});

  RunConfig bare;
  bare.cmd = {"/bin/true"};
  auto q = process_spec("img", bare, {});
  REQUIRE(q);
  CHECK(q->env == std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});
  CHECK(q->workdir == "/");
  CHECK(q->user.empty());
}

TEST_CASE("process spec: refuses no command at all and a relative working directory") {
  auto p = process_spec("scratchy", RunConfig{}, {});
  REQUIRE_FALSE(p);
  CHECK(p.error().message.find("scratchy") != std::string::npos);
  CHECK(p.error().message.find("no command") != std::string::npos);

  Overrides o;
  o.workdir = "relative/dir";
  auto q = process_spec("img", nginx_like(), o);
  REQUIRE_FALSE(q);
  CHECK(q.error().message.find("relative/dir") != std::string::npos);
}
