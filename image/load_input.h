// What `image load` reads: an image layout directory, a tar of one
// (possibly compressed) or standard input, extracted into private staging.
#pragma once

#include <string>

#include "image/fs_util.h"
#include "image/records.h"
#include "vmm/unique_fd.h"

namespace vicvmm::image {

struct LoadInput {
  UniqueFd dir;              // the layout's top directory
  TempDir extracted;         // owns the staging copy of a tar input
  std::string derived_name;  // for OCI refs that carry only a tag (see derive_name)
};

// A directory is used in place; anything else is read as a tar archive and
// its members copied under <root>/tmp: names are validated (relative, no
// "..", only files, directories and symlinks that stay inside), sizes and
// counts capped by `limits`. "-" spools standard input first.
Result<LoadInput> open_load_input(const StorePaths& paths, const std::string& path, const Limits& limits);

// The repository name an input file suggests: its base name without the
// archive extensions (.tar, .tar.gz, .tgz, .oci, ...), lowercased, other
// characters as '-': "build/My App.oci.tar" -> "my-app"; "-" -> "image".
std::string derive_name(const std::string& path);

// Opens member `name` of the layout for reading: a regular file, reached
// through the kernel's RESOLVE_IN_ROOT so no symlink leads outside `dir`.
Result<UniqueFd> open_member(int dir_fd, const std::string& name);

}  // namespace vicvmm::image
