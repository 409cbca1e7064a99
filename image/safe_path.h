// Paths from untrusted archives, confined to a root directory.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::image {

// An archive member name as a clean relative path: "./a//b/" -> "a/b", "." or
// "./" -> "" (the root). Refuses absolute names, ".." components and names
// longer than PATH_MAX; `what` names the member in the error.
Result<std::string> normalize_member(std::string_view name);

// "a/b/c" -> {"a", "b", "c"}; "" -> {}.
std::vector<std::string> split_path(std::string_view path);
// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}.
std::pair<std::string, std::string> split_parent(const std::string& path);

// openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): the
// kernel resolves every component, symlinks included, as if `root` were
// "/", so nothing outside it can be reached. Returns the fd or -errno.
int openat2_in_root(int root_fd, const std::string& path, int flags, mode_t mode = 0);

// Opens directory `path` under `root` (O_DIRECTORY), creating missing
// components (mode 0755) when `create` is set. Errors name `path`.
Result<UniqueFd> open_dir_in_root(int root_fd, const std::string& path, bool create);

// True when a symlink at `link_path` (relative to the root) with a relative
// `target` climbs above the root lexically ("a/l -> ../../x"). Absolute
// targets never do: they resolve inside the root under RESOLVE_IN_ROOT.
bool symlink_escapes(const std::string& link_path, std::string_view target);

// Removes `name` under `dir_fd` and, for a directory, everything in it;
// never follows a symlink. A missing entry is not an error.
Result<void> remove_tree_at(int dir_fd, const std::string& name);

}  // namespace vicvmm::image
