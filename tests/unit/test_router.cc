// serve's router: method + path pattern -> handler, matched without
// std::regex. Checked against the regex it replaced ("{p}" as a greedy
// "(.+)", the first route that matches wins) over many generated paths.
#include <catch2/catch.hpp>
#include <optional>
#include <regex>

#include "serve/router.h"

using namespace vicvmm;
using namespace vicvmm::serve;

namespace {

struct Spec {
  http::verb method;
  const char* pattern;
};

// serve's real patterns, in serve's order, and one with two parameters.
const Spec kRoutes[] = {
    {http::verb::head, "/_ping"},
    {http::verb::get, "/containers/json"},
    {http::verb::post, "/containers/create"},
    {http::verb::post, "/containers/{id}/start"},
    {http::verb::post, "/containers/{id}/wait"},
    {http::verb::get, "/containers/{id}/json"},
    {http::verb::delete_, "/containers/{id}"},
    {http::verb::get, "/images/{name}/json"},
    {http::verb::get, "/images/{name}/history"},
    {http::verb::post, "/images/{name}/tag"},
    {http::verb::delete_, "/images/{name}"},
    {http::verb::get, "/two/{a}/and/{b}"},
};

// The regex router's answer: the route's index and its parameters.
std::optional<std::pair<size_t, std::vector<std::string>>> by_regex(http::verb method, const std::string& path) {
  for (size_t i = 0; i < std::size(kRoutes); ++i) {
    if (kRoutes[i].method != method) continue;
    std::string re = "^", pattern = kRoutes[i].pattern;
    for (size_t k = 0; k < pattern.size();) {
      if (pattern[k] == '{') {
        re += "(.+)";
        k = pattern.find('}', k) + 1;
      } else {
        char ch = pattern[k++];
        if (std::string_view(".^$|()[]*+?\\").find(ch) != std::string_view::npos) re += '\\';
        re += ch;
      }
    }
    std::smatch m;
    if (std::regex_match(path, m, std::regex(re + "$"))) {
      std::vector<std::string> params;
      for (size_t g = 1; g < m.size(); ++g) params.push_back(m[g].str());
      return std::make_pair(i, params);
    }
  }
  return std::nullopt;
}

struct Routed {
  unsigned status;
  size_t route = 0;
  std::map<std::string, std::string> params;
};

Routed route(Router& r, http::verb method, const std::string& target) {
  Request req;
  req.method = method;
  req.method_name = std::string(http::to_string(method));
  req.target = target;
  // The handlers never touch the connection (as in the fuzz target).
  alignas(Connection) static unsigned char storage[sizeof(Connection)];
  asio::io_context io;
  Response res;
  asio::co_spawn(io, r.handle(req, *reinterpret_cast<Connection*>(storage)),
                 [&](std::exception_ptr e, Response out) {
                   REQUIRE_FALSE(e);
                   res = std::move(out);
                 });
  io.run();
  Routed out{res.status};
  if (res.status == 200) out.route = std::stoul(res.body);
  out.params = req.params;
  return out;
}

Router make_router() {
  Router r;
  for (size_t i = 0; i < std::size(kRoutes); ++i)
    r.add(kRoutes[i].method, kRoutes[i].pattern, [i](Request&, Connection&) -> asio::awaitable<Response> {
      Response res;
      res.body = std::to_string(i);
      co_return res;
    });
  return r;
}

}  // namespace

TEST_CASE("router: parameters span slashes, take the longest match, and are never empty", "[serve]") {
  Router r = make_router();
  auto a = route(r, http::verb::get, "/v1.41/images/library/debian:12/json");
  CHECK(a.status == 200);
  CHECK(a.route == 7);
  CHECK(a.params["name"] == "library/debian:12");
  auto b = route(r, http::verb::get, "/images/a/json/json");  // greedy, as "(.+)" was
  CHECK(b.params["name"] == "a/json");
  CHECK(route(r, http::verb::get, "/images///json").params["name"] == "/");
  CHECK(route(r, http::verb::get, "/images//json").status == 501);  // an empty name matches nothing
  CHECK(route(r, http::verb::get, "/images/json").status == 501);
  CHECK(route(r, http::verb::delete_, "/containers/abc/json").params["id"] == "abc/json");
  auto two = route(r, http::verb::get, "/two/x/and/y/and/z");
  CHECK(two.params["a"] == "x/and/y");
  CHECK(two.params["b"] == "z");
  CHECK(route(r, http::verb::post, "/_ping").status == 501);  // the method counts
  CHECK(route(r, http::verb::head, "/_ping").route == 0);
  CHECK(route(r, http::verb::head, "/_pingx").status == 501);
}

TEST_CASE("router: the same route and parameters as the regex it replaced, over generated paths", "[serve]") {
  Router r = make_router();
  const std::vector<std::string> pieces = {"/", "containers", "images", "json", "start", "and", "two", "x",
                                           "/json", "a/b", "tag", "history", "%2F", "", "wait"};
  const http::verb methods[] = {http::verb::get, http::verb::post, http::verb::delete_, http::verb::head};
  uint64_t state = 42;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>(state >> 33);
  };
  size_t matched = 0;
  for (int n = 0; n < 4000; ++n) {
    std::string path = "/";
    if (next() % 2) {  // a route's pattern with pieces for its parameters
      std::string pattern = kRoutes[next() % std::size(kRoutes)].pattern;
      path.clear();
      for (size_t k = 0; k < pattern.size();) {
        if (pattern[k] != '{') {
          path += pattern[k++];
          continue;
        }
        for (size_t j = next() % 3; j <= 2; ++j) path += pieces[next() % pieces.size()];
        k = pattern.find('}', k) + 1;
      }
    } else {
      for (size_t k = next() % 6; k > 0; --k) path += pieces[next() % pieces.size()] + (next() % 2 ? "/" : "");
    }
    if (path.size() > 1 && path.back() == '/' && next() % 2) path.pop_back();
    if (path.find('%') != std::string::npos) continue;  // decoding is not the matcher's business
    http::verb m = methods[next() % std::size(methods)];
    auto want = by_regex(m, path);
    auto got = route(r, m, path);
    INFO(path);
    if (!want) {
      CHECK(got.status == 501);
      continue;
    }
    ++matched;
    REQUIRE(got.status == 200);
    CHECK(got.route == want->first);
    std::vector<std::string> names;
    for (const char* p = kRoutes[want->first].pattern; (p = std::strchr(p, '{')); ++p)
      names.emplace_back(p + 1, std::strchr(p, '}'));
    REQUIRE(names.size() == want->second.size());
    for (size_t i = 0; i < names.size(); ++i) CHECK(got.params[names[i]] == want->second[i]);
  }
  CHECK(matched > 500);  // the generator does reach the routes
}
