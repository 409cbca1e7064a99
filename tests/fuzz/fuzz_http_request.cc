// libFuzzer target: the Docker API router's handling of an untrusted request
// target (serve/router.h): percent_decode(), the /vN.NN prefix, the query
// string and path-pattern matching, as Router::body_mode() and
// Router::handle() run them for every request, with no server or socket:
// handle() runs on a private io_context and the handlers only echo what the
// router gave them. The Connection they get is never touched.
//
// Input layout:
//   [0]    the method: GET, POST, DELETE, HEAD or PUT (mod 5)
//   rest   the request target ("/v1.41/images/x%2Fy/json?all=1")
//
// Checked: percent_decode never grows its input, leaves a string without
// '%' (and '+', for queries) alone, and inverts a full percent-encoding;
// body_mode spools only the route registered so; handle() answers 200 only
// through a route, with the version prefix gone, a path starting with '/',
// and parameters that rebuild that path from the route's pattern; any other
// answer is 400 (bad target or version), 414 (a path longer than
// kMaxRoutedPath) or 501 (no route).
// Run: tools/fuzz http_request [SECONDS]
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "serve/router.h"
#include "tests/fuzz/fuzz_check.h"

using namespace vicvmm;
using namespace vicvmm::serve;

namespace {

struct RouteSpec {
  http::verb method;
  const char* pattern;
  BodyMode body;
};

// A few of serve's real routes (serve/routes_*.cc), parameters included.
const RouteSpec kRoutes[] = {
    {http::verb::get, "/_ping", BodyMode::kMemory},
    {http::verb::head, "/_ping", BodyMode::kMemory},
    {http::verb::get, "/version", BodyMode::kMemory},
    {http::verb::get, "/containers/json", BodyMode::kMemory},
    {http::verb::post, "/containers/create", BodyMode::kMemory},
    {http::verb::post, "/containers/{id}/start", BodyMode::kMemory},
    {http::verb::get, "/containers/{id}/logs", BodyMode::kMemory},
    {http::verb::delete_, "/containers/{id}", BodyMode::kMemory},
    {http::verb::post, "/exec/{id}/start", BodyMode::kMemory},
    {http::verb::get, "/images/json", BodyMode::kMemory},
    {http::verb::get, "/images/{name}/json", BodyMode::kMemory},
    {http::verb::post, "/images/load", BodyMode::kSpool},
    {http::verb::post, "/images/create", BodyMode::kSpool},
    {http::verb::post, "/images/{name}/tag", BodyMode::kMemory},
    {http::verb::delete_, "/images/{name}", BodyMode::kMemory},
};

const http::verb kMethods[] = {http::verb::get, http::verb::post, http::verb::delete_, http::verb::head,
                               http::verb::put};

// The pattern with each {param} replaced by its value.
std::string rebuild(std::string_view pattern, const std::map<std::string, std::string>& params) {
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] == '{') {
      size_t close = pattern.find('}', i);
      auto it = params.find(std::string(pattern.substr(i + 1, close - i - 1)));
      if (it == params.end()) return "<missing parameter>";
      out += it->second;
      i = close + 1;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

Router& router() {
  static Router* r = [] {
    auto* r = new Router;
    for (size_t i = 0; i < std::size(kRoutes); ++i) {
      r->add(kRoutes[i].method, kRoutes[i].pattern,
             [i](Request&, Connection&) -> asio::awaitable<Response> {
               Response res;
               res.body = std::to_string(i);  // which route answered
               co_return res;
             },
             kRoutes[i].body);
    }
    return r;
  }();
  return *r;
}

void check_percent_decode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  for (bool plus : {false, true}) {
    std::string d = percent_decode(s, plus);
    FUZZ_CHECK(d.size() <= s.size());
    if (s.find('%') == std::string_view::npos && (!plus || s.find('+') == std::string_view::npos))
      FUZZ_CHECK(d == s);
    std::string enc;
    for (unsigned char c : d) {
      enc += '%';
      enc += kHex[c >> 4];
      enc += kHex[c & 15];
    }
    FUZZ_CHECK(percent_decode(enc, plus) == d);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const http::verb method = kMethods[data[0] % std::size(kMethods)];
  const std::string target(reinterpret_cast<const char*>(data + 1), size - 1);
  check_percent_decode(target);

  Router& r = router();
  const BodyMode mode = r.body_mode(method, target);

  Request req;
  req.method = method;
  req.method_name = std::string(http::to_string(method));
  req.target = target;
  // Handlers here never use the connection; it cannot be built without a
  // server, so this is storage of the right size and alignment only.
  alignas(Connection) static unsigned char conn_storage[sizeof(Connection)];
  Connection& conn = *reinterpret_cast<Connection*>(conn_storage);

  asio::io_context io;
  std::optional<Response> res;
  asio::co_spawn(io, r.handle(req, conn), [&](std::exception_ptr e, Response out) {
    if (e) std::rethrow_exception(e);  // the server would answer 500; the router should not throw
    res = std::move(out);
  });
  io.run();
  FUZZ_CHECK(res.has_value());

  if (res->status == 200) {
    size_t i = std::stoul(res->body);
    FUZZ_CHECK(i < std::size(kRoutes) && kRoutes[i].method == method);
    FUZZ_CHECK(!req.path.empty() && req.path[0] == '/');
    FUZZ_CHECK(rebuild(kRoutes[i].pattern, req.params) == req.path);
    for (const auto& [name, value] : req.params) FUZZ_CHECK(!value.empty());
    FUZZ_CHECK(mode == kRoutes[i].body);
  } else {
    // 414: a path longer than any route (the matcher's recursion is bounded).
    FUZZ_CHECK(res->status == 400 || res->status == 501 || (res->status == 414 && req.path.size() > kMaxRoutedPath));
    FUZZ_CHECK(mode == BodyMode::kMemory || res->status == 400);
  }
  return 0;
}
