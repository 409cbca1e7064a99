// docker ps --filter: parsing the filters parameter and matching containers
// the way dockerd does (values of a filter OR'd, filters AND'd).
#include <catch2/catch.hpp>

#include "serve/container_filters.h"

using namespace vicvmm;
using namespace vicvmm::serve;

namespace {

Container make(std::string id, std::string name, std::string state, int exit_code = 0, uint64_t created = 0) {
  Container c;
  c.id = std::move(id);
  c.name = std::move(name);
  c.state = std::move(state);
  c.exit_code = exit_code;
  c.created_ns = created;
  c.image_ref = "deb:exp";
  c.image_id = "ab12cd34" + std::string(56, '0');
  return c;
}

std::vector<std::string> names_matching(const std::string& filters, const std::vector<Container>& all) {
  auto f = ContainerFilters::parse(filters);
  REQUIRE(f);
  REQUIRE(f->resolve_references(all));
  std::vector<std::string> out;
  for (const auto& c : all)
    if (f->matches(c)) out.push_back(c.name);
  return out;
}

std::string error_of(const std::string& filters) {
  auto f = ContainerFilters::parse(filters);
  return f ? "" : f.error().message;
}

}  // namespace

TEST_CASE("container filters: each filter, both JSON forms, AND across filters", "[serve]") {
  Container web = make("aaaa1111", "web", "running", 0, 100);
  web.config = {{"Labels", {{"tier", "front"}, {"team", "a"}}}, {"ExposedPorts", {{"443/tcp", nlohmann::json::object()}}}};
  web.ports.push_back({false, "0.0.0.0", 8080, 80});
  Container db = make("bbbb2222", "db", "exited", 3, 200);
  db.config = {{"Labels", {{"tier", "back"}}}};
  Container job = make("aaab3333", "web-job", "exited", 0, 300);
  job.image_ref = "other:1";
  job.image_id = "ffff" + std::string(60, '0');
  Container fresh = make("cccc4444", "fresh", "starting", 0, 400);  // shown as created
  const std::vector<Container> all = {web, db, job, fresh};
  using V = std::vector<std::string>;

  CHECK(names_matching("", all) == V{"web", "db", "web-job", "fresh"});
  CHECK(names_matching(R"({"name":{"web":true}})", all) == V{"web", "web-job"});  // unanchored
  CHECK(names_matching(R"({"name":["^web$"]})", all) == V{"web"});                // old clients' lists
  CHECK(names_matching(R"({"name":{"^/db$":true}})", all) == V{"db"});            // dockerd's "/name" form
  CHECK(names_matching(R"({"id":{"aaa":true}})", all) == V{"web", "web-job"});
  CHECK(names_matching(R"({"status":{"exited":true}})", all) == V{"db", "web-job"});
  CHECK(names_matching(R"({"status":{"created":true,"running":true}})", all) == V{"web", "fresh"});
  CHECK(names_matching(R"({"exited":{"3":true}})", all) == V{"db"});
  CHECK(names_matching(R"({"exited":{"0":true}})", all) == V{"web-job"});  // a running one has no exit code yet
  CHECK(names_matching(R"({"label":{"tier":true}})", all) == V{"web", "db"});
  CHECK(names_matching(R"({"label":{"tier=front":true}})", all) == V{"web"});
  CHECK(names_matching(R"({"label":{"tier":true,"team=a":true}})", all) == V{"web"});  // every label
  CHECK(names_matching(R"({"ancestor":{"other:1":true}})", all) == V{"web-job"});
  CHECK(names_matching(R"({"ancestor":{"deb:exp":true}})", all) == V{"web", "db", "fresh"});
  CHECK(names_matching(R"({"ancestor":{"sha256:ab12cd":true}})", all) == V{"web", "db", "fresh"});
  CHECK(names_matching(R"({"publish":{"80":true}})", all) == V{"web"});
  CHECK(names_matching(R"({"publish":{"80/udp":true}})", all).empty());
  CHECK(names_matching(R"({"publish":{"443":true}})", all).empty());  // exposed, not published
  CHECK(names_matching(R"({"expose":{"443/tcp":true}})", all) == V{"web"});
  CHECK(names_matching(R"({"before":{"web-job":true}})", all) == V{"web", "db"});
  CHECK(names_matching(R"({"since":{"db":true}})", all) == V{"web-job", "fresh"});
  CHECK(names_matching(R"({"name":{"web":true},"status":{"exited":true}})", all) == V{"web-job"});  // AND
}

TEST_CASE("container filters: bad filters are refused by name", "[serve]") {
  CHECK(error_of("{") == "invalid filters: {");
  CHECK(error_of("[]") == "invalid filters: []");
  CHECK(error_of(R"({"network":{"bridge":true}})") == "invalid filter 'network'");
  CHECK_THAT(error_of(R"({"status":{"sleeping":true}})"), Catch::Contains("invalid filter 'status=sleeping'"));
  CHECK_THAT(error_of(R"({"exited":{"x":true}})"), Catch::Contains("invalid filter 'exited=x'"));
  CHECK_THAT(error_of(R"({"publish":{"70000":true}})"), Catch::Contains("invalid filter 'publish=70000'"));
  CHECK_THAT(error_of(R"({"name":{"([":true}})"), Catch::Contains("not a regular expression"));
  CHECK_THAT(error_of(R"({"name":{")" + std::string(300, 'a') + R"(":true}})"), Catch::Contains("at most 256"));
  CHECK_THAT(error_of(R"({"name":"web"})"), Catch::Contains("not a list of values"));

  auto f = ContainerFilters::parse(R"({"before":{"nobody":true}})");
  REQUIRE(f);
  auto r = f->resolve_references({make("aaaa", "x", "running")});
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "No such container: nobody");
  CHECK(ContainerFilters::parse(R"({"status":{"exited":true}})")->implies_all());
  CHECK_FALSE(ContainerFilters::parse(R"({"name":{"x":true}})")->implies_all());
}
