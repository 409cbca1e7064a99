// Docker Engine API routing: method + path pattern -> handler, with docker's
// /vN.NN prefix, headers and JSON errors.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serve/http_server.h"

namespace vicvmm::serve {

inline constexpr const char* kApiVersion = "1.41";
inline constexpr int kMinApiMinor = 24, kMaxApiMinor = 43;
// Longer paths are refused (414) before any route is matched: an image
// reference is at most ~400 bytes, and a route with two parameters matches
// in time quadratic in the path's length.
inline constexpr size_t kMaxRoutedPath = 2048;

using Handler = std::function<asio::awaitable<Response>(Request&, Connection&)>;

// {"message": ...} with a docker status, the shape the docker CLI prints as
// "Error response from daemon: ...".
Response error_response(unsigned status, std::string_view message);
Response json_response(const nlohmann::json& j, unsigned status = 200);
// A manager's error (api_error.h) as docker's status: ENOENT 404,
// EEXIST/EBUSY 409, EINVAL 400, anything else 500.
Response api_error(const Error& e);
// Api-Version, Docker-Experimental, Ostype, Server: on every response.
HeaderList docker_headers(const std::string& server_version);

// "%2F" -> "/"; with `plus_is_space`, "+" -> " " (query strings).
std::string percent_decode(std::string_view s, bool plus_is_space);
// "1", "true", "True" -> true (docker's boolean query values).
bool query_flag(const Request& req, const std::string& key);

class Router : public Dispatcher {
 public:
  // `pattern`: "/images/{name}/json"; a parameter matches one or more path
  // segments (image names have slashes), the rest must match exactly.
  void add(http::verb method, const std::string& pattern, Handler handler, BodyMode body = BodyMode::kMemory);

  BodyMode body_mode(http::verb method, std::string_view target) const override;
  asio::awaitable<Response> handle(Request& req, Connection& conn) override;

 private:
  // A pattern is literals[0] {names[0]} literals[1] ... (literals has one
  // more element than names; matched without std::regex, which cost ~4 %
  // of serve's I/O thread per request, twice).
  struct Route {
    http::verb method;
    std::vector<std::string> literals;
    std::vector<std::string> names;
    Handler handler;
    BodyMode body;
  };
  // The path without the version prefix; an error response for a bad version.
  static tl::expected<std::string, Response> strip_version(std::string_view path);
  const Route* find(http::verb method, std::string_view path, std::vector<std::string_view>* params) const;
  std::vector<Route> routes_;
};

}  // namespace vicvmm::serve
