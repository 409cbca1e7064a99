// How a container's process is derived from its image and the user's
// overrides, with Docker's rules, so `vicvmm run --image`, templates of an
// image and the Docker API all start the same process for the same input.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "image/store.h"
#include "vmm/result.h"

namespace vicvmm::image {

struct Overrides {
  // Set: replaces the image's Entrypoint (and drops its Cmd); an empty
  // vector clears it (docker run --entrypoint "").
  std::optional<std::vector<std::string>> entrypoint;
  std::vector<std::string> cmd;  // non-empty: replaces the image's Cmd
  std::vector<std::string> env;  // "KEY=value" (or "KEY": dropped, nothing to take it from)
  std::optional<std::string> workdir, user;
};

struct ProcessSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string workdir;  // never empty: "/" by default
  std::string user;     // "" = root
};

// Fails when neither the image nor the overrides give a command, or a
// working directory is not absolute. `image_name` is for the messages.
Result<ProcessSpec> process_spec(const std::string& image_name, const RunConfig& image, const Overrides& o);

// Merges environment lists: later entries replace earlier ones with the same key.
std::vector<std::string> merge_env(const std::vector<std::string>& base, const std::vector<std::string>& overrides);

}  // namespace vicvmm::image
