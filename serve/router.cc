#include "serve/router.h"

#include <charconv>

namespace vicvmm::serve {

Response error_response(unsigned status, std::string_view message) {
  return json_response(nlohmann::json{{"message", message}}, status);
}

Response json_response(const nlohmann::json& j, unsigned status) {
  Response r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return r;
}

HeaderList docker_headers(const std::string& server_version) {
  return {{"Api-Version", kApiVersion},
          {"Docker-Experimental", "false"},
          {"Ostype", "linux"},
          {"Server", "vicvmm/" + server_version}};
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

bool query_flag(const Request& req, const std::string& key) {
  auto it = req.query.find(key);
  if (it == req.query.end()) return false;
  return it->second == "1" || it->second == "true" || it->second == "True" || it->second == "TRUE";
}

void Router::add(http::verb method, const std::string& pattern, Handler handler, BodyMode body) {
  Route r{method, {""}, {}, std::move(handler), body};
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] == '{') {
      size_t close = pattern.find('}', i);
      r.names.push_back(pattern.substr(i + 1, close - i - 1));
      r.literals.emplace_back();
      i = close + 1;
    } else {
      r.literals.back() += pattern[i++];
    }
  }
  routes_.push_back(std::move(r));
}

// literals[i] at `pos`, then (if more follow) a parameter of at least one
// character and the rest: the longest parameter that lets the rest match
// first, as a greedy "(.+)" would.
static bool match_from(const std::vector<std::string>& literals, size_t i, std::string_view path, size_t pos,
                       std::vector<std::string_view>* params) {
  const std::string& lit = literals[i];
  if (path.size() - pos < lit.size() || path.compare(pos, lit.size(), lit) != 0) return false;
  pos += lit.size();
  if (i + 1 == literals.size()) return pos == path.size();
  const std::string& next = literals[i + 1];
  if (path.size() < pos + 1 + next.size()) return false;
  for (size_t end = path.size() - next.size(); end > pos; --end) {
    if (path.compare(end, next.size(), next) != 0) continue;
    params->push_back(path.substr(pos, end - pos));
    if (match_from(literals, i + 1, path, end, params)) return true;
    params->pop_back();
  }
  return false;
}

Response api_error(const Error& e) {
  unsigned status = e.sys_errno == ENOENT ? 404 : e.sys_errno == EEXIST || e.sys_errno == EBUSY ? 409
                  : e.sys_errno == EINVAL                                   ? 400
                                                                            : 500;
  return error_response(status, e.message);
}

tl::expected<std::string, Response> Router::strip_version(std::string_view path) {
  // "/v" and a digit starts a version prefix ("/v1.41/..."); anything but
  // MAJOR.MINOR there is a bad version, as with docker.
  if (path.size() < 3 || path[0] != '/' || path[1] != 'v' || !(path[2] >= '0' && path[2] <= '9'))
    return std::string(path);
  size_t end = path.find('/', 1);
  std::string_view version = path.substr(2, end == std::string_view::npos ? std::string_view::npos : end - 2);
  std::string rest = end == std::string_view::npos ? "/" : std::string(path.substr(end));
  int major = 0, minor = 0;
  size_t dot = version.find('.');
  bool ok = dot != std::string_view::npos && dot > 0 && dot + 1 < version.size() &&
            version.find('.', dot + 1) == std::string_view::npos;
  if (ok) {
    auto r1 = std::from_chars(version.data(), version.data() + dot, major);
    auto r2 = std::from_chars(version.data() + dot + 1, version.data() + version.size(), minor);
    ok = r1.ec == std::errc() && r2.ec == std::errc() && r1.ptr == version.data() + dot &&
         r2.ptr == version.data() + version.size();
  }
  if (!ok) return tl::unexpected(error_response(400, fmt::format("invalid API version string: {}", version)));
  if (major < 1 || (major == 1 && minor < kMinApiMinor))
    return tl::unexpected(error_response(
        400, fmt::format("client version {} is too old. Minimum supported API version is 1.{}, please upgrade your "
                         "client to a newer version",
                         version, kMinApiMinor)));
  if (major > 1 || minor > kMaxApiMinor)
    return tl::unexpected(error_response(
        400, fmt::format("client version {} is too new. Maximum supported API version is 1.{}", version, kMaxApiMinor)));
  return rest;
}

const Router::Route* Router::find(http::verb method, std::string_view path, std::vector<std::string_view>* params) const {
  if (path.size() > kMaxRoutedPath) return nullptr;
  for (const auto& r : routes_) {
    params->clear();
    if (r.method == method && match_from(r.literals, 0, path, 0, params)) return &r;
  }
  return nullptr;
}

BodyMode Router::body_mode(http::verb method, std::string_view target) const {
  std::string_view raw = target.substr(0, target.find('?'));
  auto path = strip_version(percent_decode(raw, false));
  if (!path) return BodyMode::kMemory;
  std::vector<std::string_view> params;
  const Route* r = find(method, *path, &params);
  return r ? r->body : BodyMode::kMemory;
}

asio::awaitable<Response> Router::handle(Request& req, Connection& conn) {
  size_t q = req.target.find('?');
  std::string_view raw = std::string_view(req.target).substr(0, q);
  if (raw.empty() || raw[0] != '/') co_return error_response(400, fmt::format("bad request target: {}", req.target));
  auto path = strip_version(percent_decode(raw, false));
  if (!path) co_return path.error();
  req.path = *path;
  if (q != std::string::npos) {
    std::string_view query = std::string_view(req.target).substr(q + 1);
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view kv = query.substr(0, amp);
      size_t eq = kv.find('=');
      if (!kv.empty())
        req.query[percent_decode(kv.substr(0, eq), true)] =
            eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1), true);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
  }
  if (req.path.size() > kMaxRoutedPath)
    co_return error_response(414, fmt::format("request path of {} bytes, at most {}", req.path.size(), kMaxRoutedPath));
  std::vector<std::string_view> params;
  const Route* r = find(req.method, req.path, &params);
  if (!r)
    co_return error_response(501, fmt::format("vicvmm does not implement {} {}", req.method_name, req.path));
  for (size_t i = 0; i < r->names.size(); ++i) req.params[r->names[i]] = std::string(params[i]);
  co_return co_await r->handler(req, conn);
}

}  // namespace vicvmm::serve
