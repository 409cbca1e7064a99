#include "serve/container_filters.h"

#include <charconv>
#include <set>

#include <nlohmann/json.hpp>

#include "image/records.h"

namespace vicvmm::serve {

using nlohmann::json;

namespace {

const std::set<std::string, std::less<>> kFilters = {"id",     "name",   "status",  "exited",  "label",
                                                     "ancestor", "before", "since", "publish", "expose"};
const std::set<std::string, std::less<>> kStatuses = {"created", "restarting", "running", "removing",
                                                      "paused",  "exited",     "dead"};

bool any_of(const std::vector<std::string>& values, auto pred) {
  for (const auto& v : values)
    if (pred(v)) return true;
  return false;
}

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "80", "80/tcp", "80/udp" -> port and protocol ("" = either).
std::optional<std::pair<uint16_t, std::string>> parse_port(std::string_view s) {
  std::string proto;
  if (auto slash = s.find('/'); slash != std::string_view::npos) {
    proto = std::string(s.substr(slash + 1));
    s = s.substr(0, slash);
    if (proto != "tcp" && proto != "udp") return std::nullopt;
  }
  auto n = parse_int(s);
  if (!n || *n < 1 || *n > 65535) return std::nullopt;
  return std::make_pair(static_cast<uint16_t>(*n), proto);
}

std::string image_hex(std::string_view ref) {
  if (ref.starts_with("sha256:")) ref.remove_prefix(7);
  return std::string(ref);
}

bool same_image(const Container& c, const std::string& ref) {
  if (c.image_ref == ref) return true;
  auto a = image::normalize_tag(ref), b = image::normalize_tag(c.image_ref);
  if (a && b && *a == *b) return true;
  const std::string hex = image_hex(ref);
  return hex.size() >= 4 && hex.find_first_not_of("0123456789abcdef") == std::string::npos &&
         c.image_id.starts_with(hex);
}

bool has_label(const Container& c, const std::string& want) {
  auto labels = c.config.find("Labels");
  if (labels == c.config.end() || !labels->is_object()) return false;
  const auto eq = want.find('=');
  const std::string key = want.substr(0, eq);
  auto it = labels->find(key);
  if (it == labels->end()) return false;
  return eq == std::string::npos || (it->is_string() && it->get<std::string>() == want.substr(eq + 1));
}

bool exposes(const Container& c, uint16_t port, const std::string& proto, bool published_only) {
  for (const auto& p : c.ports)
    if (p.guest_port == port && (proto.empty() || proto == (p.udp ? "udp" : "tcp"))) return true;
  if (published_only) return false;
  auto exposed = c.config.find("ExposedPorts");
  if (exposed == c.config.end() || !exposed->is_object()) return false;
  for (const auto& [key, unused] : exposed->items()) {
    auto p = parse_port(key);
    if (p && p->first == port && (proto.empty() || p->second.empty() || p->second == proto)) return true;
  }
  return false;
}

}  // namespace

Result<ContainerFilters> ContainerFilters::parse(std::string_view text) {
  ContainerFilters f;
  if (text.empty()) return f;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return err("invalid filters: {}", text);
  for (const auto& [key, value] : j.items()) {
    if (!kFilters.count(key)) return err("invalid filter '{}'", key);
    std::vector<std::string>& vals = f.values_[key];
    if (value.is_object()) {
      for (const auto& [k, v] : value.items()) vals.push_back(k);
    } else if (value.is_array()) {
      for (const auto& v : value) {
        if (!v.is_string()) return err("invalid filter '{}': values are strings", key);
        vals.push_back(v.get<std::string>());
      }
    } else {
      return err("invalid filter '{}': not a list of values", key);
    }
    for (const auto& v : vals) {
      if (key == "status" && !kStatuses.count(v))
        return err("invalid filter 'status={}': use created, restarting, running, removing, paused, exited or dead", v);
      if (key == "exited" && !parse_int(v)) return err("invalid filter 'exited={}': an exit code", v);
      if ((key == "publish" || key == "expose") && !parse_port(v))
        return err("invalid filter '{}={}': a port, with /tcp or /udp", key, v);
      if (key == "name") {
        // std::regex recurses per character: keep hostile patterns small.
        if (v.size() > 256) return err("invalid filter 'name': a pattern of at most 256 characters");
        try {
          f.names_.emplace_back(v, std::regex::ECMAScript);
        } catch (const std::regex_error&) {
          return err("invalid filter 'name={}': not a regular expression", v);
        }
      }
    }
  }
  return f;
}

Result<> ContainerFilters::resolve_references(const std::vector<Container>& all) {
  for (const char* key : {"before", "since"}) {
    auto it = values_.find(key);
    if (it == values_.end()) continue;
    for (const auto& ref : it->second) {
      const std::string r = ref.starts_with("/") ? ref.substr(1) : ref;
      const Container* found = nullptr;
      for (const auto& c : all)
        if (c.id == r || c.name == r || (r.size() >= 1 && c.id.starts_with(r))) {
          found = &c;
          if (c.id == r || c.name == r) break;
        }
      if (!found) return err("No such container: {}", ref);
      auto& bound = std::string_view(key) == "before" ? before_ns_ : since_ns_;
      // Several values: dockerd keeps the last; the tightest is as good.
      if (std::string_view(key) == "before")
        bound = bound ? std::min(*bound, found->created_ns) : found->created_ns;
      else
        bound = bound ? std::max(*bound, found->created_ns) : found->created_ns;
    }
  }
  return {};
}

bool ContainerFilters::matches(const Container& c) const {
  auto vals = [&](const char* key) -> const std::vector<std::string>* {
    auto it = values_.find(key);
    return it == values_.end() || it->second.empty() ? nullptr : &it->second;
  };
  if (auto v = vals("id"); v && !any_of(*v, [&](const std::string& s) { return c.id.starts_with(s); })) return false;
  if (!names_.empty()) {
    bool any = false;
    // Names are "/web" to dockerd's filter, "web" to most users: either.
    for (const auto& re : names_) any = any || std::regex_search("/" + c.name, re) || std::regex_search(c.name, re);
    if (!any) return false;
  }
  const std::string state = c.state == "starting" ? "created" : c.state;
  if (auto v = vals("status"); v && !any_of(*v, [&](const std::string& s) { return s == state; })) return false;
  if (auto v = vals("exited"); v && !(state == "exited" && any_of(*v, [&](const std::string& s) {
                                   return parse_int(s) == c.exit_code;
                                 })))
    return false;
  if (auto v = vals("label"); v) {
    for (const auto& l : *v)  // every label asked for
      if (!has_label(c, l)) return false;
  }
  if (auto v = vals("ancestor"); v && !any_of(*v, [&](const std::string& s) { return same_image(c, s); })) return false;
  for (const char* key : {"publish", "expose"}) {
    if (auto v = vals(key); v && !any_of(*v, [&](const std::string& s) {
          auto p = parse_port(s);
          return p && exposes(c, p->first, p->second, std::string_view(key) == "publish");
        }))
      return false;
  }
  if (before_ns_ && c.created_ns >= *before_ns_) return false;
  if (since_ns_ && c.created_ns <= *since_ns_) return false;
  return true;
}

}  // namespace vicvmm::serve
