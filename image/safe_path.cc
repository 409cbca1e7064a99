#include "image/safe_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace vicvmm::image {

Result<std::string> normalize_member(std::string_view name) {
  if (name.size() >= PATH_MAX) return err("name is longer than {} bytes", PATH_MAX - 1);
  if (!name.empty() && name[0] == '/') return err("absolute path");
  if (name.find('\0') != std::string_view::npos) return err("NUL in name");
  std::string out;
  for (const auto& part : split_path(name)) {
    if (part == ".") continue;
    if (part == "..") return err("path climbs out with '..'");
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::pair<std::string, std::string> split_parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

int openat2_in_root(int root_fd, const std::string& path, int flags, mode_t mode) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const char* p = path.empty() ? "." : path.c_str();
  for (;;) {
    long fd = syscall(SYS_openat2, root_fd, p, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    // EAGAIN: a concurrent rename raced the lookup; the kernel asks to retry.
    if (errno != EAGAIN && errno != EINTR) return -errno;
  }
}

Result<UniqueFd> open_dir_in_root(int root_fd, const std::string& path, bool create) {
  int fd = openat2_in_root(root_fd, path, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) return UniqueFd(fd);
  if (fd != -ENOENT || !create) {
    errno = -fd;
    return sys_err("directory {}", path.empty() ? "/" : path);
  }
  // Walk down from the root, creating what is missing; every step is
  // resolved under the root again, so a symlink on the way stays inside.
  UniqueFd dir(dup(root_fd));
  if (!dir) return sys_err("dup");
  std::string prefix;
  for (const auto& part : split_path(path)) {
    prefix += (prefix.empty() ? "" : "/") + part;
    int next = openat2_in_root(root_fd, prefix, O_RDONLY | O_DIRECTORY);
    if (next == -ENOENT) {
      if (mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST) return sys_err("creating directory {}", prefix);
      next = openat2_in_root(root_fd, prefix, O_RDONLY | O_DIRECTORY);
    }
    if (next < 0) {
      errno = -next;
      return sys_err("directory {}", prefix);
    }
    dir.reset(next);
  }
  return dir;
}

bool symlink_escapes(const std::string& link_path, std::string_view target) {
  if (!target.empty() && target[0] == '/') return false;
  int depth = static_cast<int>(split_path(split_parent(link_path).first).size());
  for (const auto& part : split_path(target)) {
    if (part == ".") continue;
    if (part == "..") {
      if (--depth < 0) return true;
    } else {
      ++depth;
    }
  }
  return false;
}

Result<void> remove_tree_at(int dir_fd, const std::string& name) {
  struct stat st {};
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return sys_err("{}", name);
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return sys_err("opening {}", name);
    DIR* d = fdopendir(fd);
    if (!d) {
      close(fd);
      return sys_err("opening {}", name);
    }
    std::vector<std::string> children;
    while (struct dirent* e = readdir(d)) {
      std::string child = e->d_name;
      if (child != "." && child != "..") children.push_back(std::move(child));
    }
    Result<void> r;
    for (const auto& child : children) {
      r = remove_tree_at(dirfd(d), child);
      if (!r) break;
    }
    closedir(d);
    if (!r) return with_context(r.error(), name);
    if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) return sys_err("removing {}", name);
    return {};
  }
  if (unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return sys_err("removing {}", name);
  return {};
}

}  // namespace vicvmm::image
