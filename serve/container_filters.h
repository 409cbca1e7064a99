// `docker ps --filter`: the `filters` query parameter of GET
// /containers/json, parsed and matched the way dockerd does: the values of
// one filter are alternatives, different filters must all match.
// Filters: id (prefix), name (regular expression, unanchored), status,
// exited (exit code), label (KEY or KEY=VALUE), ancestor (image reference
// or id prefix), before / since (another container), publish / expose
// (container port[/proto]). Others (network, volume, health, ...) are
// refused by name: nothing here has them, and an empty list would mislead.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "serve/containers.h"
#include "vmm/result.h"

namespace vicvmm::serve {

class ContainerFilters {
 public:
  // {"name":{"web":true}} (current clients) or {"name":["web"]} (old
  // ones); empty text: no filter. Errors say which filter or value.
  static Result<ContainerFilters> parse(std::string_view text);

  // before/since name other containers: resolved against `all` (by id,
  // id prefix or name); an unknown one is an error, as in dockerd.
  Result<> resolve_references(const std::vector<Container>& all);

  bool matches(const Container& c) const;
  // A status filter lists stopped containers without --all (as dockerd).
  bool implies_all() const { return values_.count("status") != 0; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::regex> names_;
  std::optional<uint64_t> before_ns_, since_ns_;  // created_ns bounds, once resolved
};

}  // namespace vicvmm::serve
