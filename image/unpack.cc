#include "image/unpack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <optional>
#include <unordered_set>
#include <vector>

#include "image/archive_util.h"
#include "image/safe_path.h"
#include "vmm/unique_fd.h"

namespace vicvmm::image {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";  // aufs bookkeeping, never content
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// Extended attributes worth carrying into the root filesystem; the rest
// (security.selinux, ...) describe the host that built the layer.
bool keep_xattr(std::string_view name) {
  return name.starts_with("user.") || name.starts_with("trusted.") || name == "security.capability";
}

std::string join(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }

// Refusals that concern the whole layer rather than one entry.
struct LayerRefusal {
  std::string message;
};

class LayerApplier {
 public:
  LayerApplier(int root_fd, const LayerSource& layer, const Limits& limits, UnpackState& state)
      : root_fd_(root_fd), layer_(layer), limits_(limits), state_(state) {}

  Result<void> run();

 private:
  Result<void> apply_entry(archive* a, archive_entry* e, const std::string& path);
  Result<void> write_file(archive* a, archive_entry* e, int parent_fd, const std::string& base);
  Result<void> hardlink(archive_entry* e, int parent_fd, const std::string& base);
  Result<void> whiteout(const std::string& dir, const std::string& name);
  Result<void> make_opaque(const std::string& dir);
  Result<void> clear_lower(int dir_fd, const std::string& dir);
  Result<void> set_metadata(archive_entry* e, int parent_fd, const std::string& base, const std::string& path);
  Result<void> set_root_metadata(archive_entry* e);
  Result<void> check_not_through_escaping(const std::string& dir) const;
  void forget_subtree(const std::string& path);
  void apply_dir_times();

  int root_fd_;
  const LayerSource& layer_;
  const Limits& limits_;
  UnpackState& state_;
  std::unordered_set<std::string> created_;  // paths this layer created (for opaque dirs)
  struct DirTime {
    std::string path;
    timespec times[2];
  };
  std::vector<DirTime> dir_times_;  // set last: entries added inside a dir change its mtime
  std::optional<LayerRefusal> refusal_;
  std::vector<char> buf_;
};

Result<void> LayerApplier::run() {
  UniqueFd fd(open(layer_.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err("{}: opening {}", layer_.name, layer_.path);
  ArchiveReader a = new_tar_reader();
  if (!a) return err("{}: libarchive: out of memory", layer_.name);
  HashingSource source(fd.get());
  std::optional<Error> failure;
  if (source.open(a.get()) != ARCHIVE_OK) failure = Error{fmt::format("{}: {}", layer_.name, archive_error(a.get()))};
  while (!failure) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      failure = Error{fmt::format("{}: corrupt or truncated archive: {}", layer_.name, archive_error(a.get()))};
      break;
    }
    const char* raw = archive_entry_pathname(e);
    std::string shown = raw ? raw : "(unreadable name)";
    if (!raw) {
      failure = Error{fmt::format("{}: entry {}: name is not valid in this locale", layer_.name, shown)};
      break;
    }
    if (++state_.stats.entries > limits_.max_entries) {
      failure = Error{fmt::format("{}: has more than {} entries (limit)", layer_.name, limits_.max_entries)};
      break;
    }
    auto path = normalize_member(raw);
    Result<void> applied = path ? apply_entry(a.get(), e, *path) : tl::unexpected(path.error());
    if (refusal_) {
      failure = Error{refusal_->message};
    } else if (!applied) {
      failure = Error{fmt::format("{}: entry {}: {}", layer_.name, shown, applied.error().message),
                      applied.error().sys_errno};
    }
  }
  // A blob that is not what its digest says is the root cause of whatever
  // else went wrong reading it: check it first.
  if (!layer_.digest.empty()) {
    auto got = source.finish();
    if (!got) return with_context(got.error(), layer_.name);
    if (*got != layer_.digest) return err("{}: digest mismatch (got {})", layer_.name, *got);
  }
  if (failure) return tl::unexpected(*failure);
  apply_dir_times();
  return {};
}

Result<void> LayerApplier::check_not_through_escaping(const std::string& dir) const {
  if (state_.escaping_symlinks.empty()) return {};
  std::string prefix;
  for (const auto& part : split_path(dir)) {
    prefix = join(prefix, part);
    if (state_.escaping_symlinks.count(prefix))
      return err("writes through symlink {}, which points outside the image root", prefix);
  }
  return {};
}

void LayerApplier::forget_subtree(const std::string& path) {
  auto& links = state_.escaping_symlinks;
  links.erase(path);
  // Everything under "path/": the range ["path/", "path0"), '0' follows '/'.
  links.erase(links.lower_bound(path + "/"), links.lower_bound(path + "0"));
}

Result<void> LayerApplier::apply_entry(archive* a, archive_entry* e, const std::string& path) {
  auto [dir, base] = split_parent(path);
  VIC_TRY(check_not_through_escaping(dir));
  mode_t type = archive_entry_filetype(e);
  if (path.empty()) {  // "./": the root directory itself
    if (type != AE_IFDIR) return err("the root must be a directory");
    return set_root_metadata(e);
  }
  if (base == kOpaqueMarker) return make_opaque(dir);
  if (base.starts_with(kWhiteoutMetaPrefix)) return {};
  if (base.starts_with(kWhiteoutPrefix)) return whiteout(dir, base.substr(kWhiteoutPrefix.size()));

  VIC_ASSIGN(UniqueFd parent, open_dir_in_root(root_fd_, dir, /*create=*/true));
  const char* link_target = archive_entry_hardlink(e);
  struct stat existing {};
  bool exists = fstatat(parent.get(), base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
  bool merge_dir = exists && !link_target && type == AE_IFDIR && S_ISDIR(existing.st_mode);
  if (exists && !merge_dir) {
    // Replace, never reuse: opening the old path could write through a
    // symlink or into a file hardlinked elsewhere.
    VIC_TRY(remove_tree_at(parent.get(), base));
    forget_subtree(path);
  }
  created_.insert(path);

  if (link_target) return hardlink(e, parent.get(), base);
  switch (type) {
    case AE_IFREG:
      VIC_TRY(write_file(a, e, parent.get(), base));
      break;
    case AE_IFDIR:
      if (!merge_dir && mkdirat(parent.get(), base.c_str(), 0700) != 0) return sys_err("mkdir");
      break;
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      if (!target || !*target) return err("symlink without a target");
      if (symlinkat(target, parent.get(), base.c_str()) != 0) return sys_err("symlink");
      if (symlink_escapes(path, target)) state_.escaping_symlinks.insert(path);
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
      dev_t dev = kind == S_IFIFO ? 0 : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
      if (mknodat(parent.get(), base.c_str(), kind | 0600, dev) != 0) return sys_err("mknod");
      break;
    }
    case AE_IFSOCK:
      created_.erase(path);
      return {};  // a socket is bound at run time, never shipped
    default:
      return err("unsupported entry type {:o}", type);
  }
  return set_metadata(e, parent.get(), base, path);
}

Result<void> LayerApplier::write_file(archive* a, archive_entry* e, int parent_fd, const std::string& base) {
  UniqueFd out(openat(parent_fd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return sys_err("create");
  uint64_t size = archive_entry_size_is_set(e) ? static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(e), 0)) : 0;
  uint64_t before = state_.stats.bytes;
  auto over_limit = [&](uint64_t extent) {
    if (extent <= limits_.max_unpacked_bytes - std::min(before, limits_.max_unpacked_bytes)) return false;
    refusal_ = LayerRefusal{fmt::format("{}: unpacks to more than {} bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)",
                                        layer_.name, limits_.max_unpacked_bytes)};
    return true;
  };
  if (over_limit(size)) return err("too large");
  uint64_t end = 0;
  for (;;) {
    const void* data = nullptr;
    size_t len = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(a, &data, &len, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return err("corrupt or truncated archive: {}", archive_error(a));
    if (offset < 0) return err("negative data offset");
    uint64_t block_end = static_cast<uint64_t>(offset) + len;
    if (over_limit(block_end)) return err("too large");
    end = std::max(end, block_end);
    const char* p = static_cast<const char*>(data);
    while (len) {
      ssize_t n = pwrite(out.get(), p, len, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return sys_err("write");
      p += n;
      len -= static_cast<size_t>(n);
      offset += n;
    }
  }
  end = std::max(end, size);
  // Sparse files: the tail after the last data block is a hole.
  if (ftruncate(out.get(), static_cast<off_t>(end)) != 0) return sys_err("truncate");
  state_.stats.bytes = before + end;
  return {};
}

Result<void> LayerApplier::hardlink(archive_entry* e, int parent_fd, const std::string& base) {
  auto target = normalize_member(archive_entry_hardlink(e));
  if (!target) return err("hardlink target {}: {}", archive_entry_hardlink(e), target.error().message);
  if (target->empty()) return err("hardlink to the root directory");
  auto [tdir, tbase] = split_parent(*target);
  if (auto r = check_not_through_escaping(tdir); !r) return err("hardlink target {}: {}", *target, r.error().message);
  int tparent = openat2_in_root(root_fd_, tdir, O_RDONLY | O_DIRECTORY);
  if (tparent < 0) {
    errno = -tparent;
    return sys_err("hardlink target {}", *target);
  }
  UniqueFd tparent_fd(tparent);
  struct stat st {};
  if (fstatat(tparent, tbase.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return sys_err("hardlink target {}", *target);
  if (S_ISDIR(st.st_mode)) return err("hardlink target {} is a directory", *target);
  if (linkat(tparent, tbase.c_str(), parent_fd, base.c_str(), 0) != 0) return sys_err("hardlink to {}", *target);
  return {};
}

Result<void> LayerApplier::whiteout(const std::string& dir, const std::string& name) {
  if (name.empty() || name == "." || name == "..") return err("whiteout of '{}'", name);
  int fd = openat2_in_root(root_fd_, dir, O_RDONLY | O_DIRECTORY);
  if (fd == -ENOENT || fd == -ENOTDIR) return {};  // nothing below to hide
  if (fd < 0) {
    errno = -fd;
    return sys_err("whiteout in {}", dir);
  }
  UniqueFd parent(fd);
  VIC_TRY(remove_tree_at(parent.get(), name));
  forget_subtree(join(dir, name));
  return {};
}

Result<void> LayerApplier::make_opaque(const std::string& dir) {
  VIC_ASSIGN(UniqueFd fd, open_dir_in_root(root_fd_, dir, /*create=*/true));
  return clear_lower(fd.get(), dir);
}

// Removes what the lower layers put under `dir`; what this layer created
// stays, and its directories are cleared of lower content in turn.
Result<void> LayerApplier::clear_lower(int dir_fd, const std::string& dir) {
  int fd = dup(dir_fd);
  if (fd < 0) return sys_err("dup");
  DIR* d = fdopendir(fd);
  if (!d) {
    close(fd);
    return sys_err("opening {}", dir);
  }
  rewinddir(d);
  std::vector<std::string> names;
  while (struct dirent* de = readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  closedir(d);
  for (const auto& n : names) {
    std::string child = join(dir, n);
    if (!created_.count(child)) {
      VIC_TRY(remove_tree_at(dir_fd, n));
      forget_subtree(child);
      continue;
    }
    struct stat st {};
    if (fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
      UniqueFd sub(openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) return sys_err("opening {}", child);
      VIC_TRY(clear_lower(sub.get(), child));
    }
  }
  return {};
}

Result<void> LayerApplier::set_metadata(archive_entry* e, int parent_fd, const std::string& base,
                                        const std::string& path) {
  mode_t type = archive_entry_filetype(e);
  bool root = geteuid() == 0;
  if (fchownat(parent_fd, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
               static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) != 0 &&
      !(errno == EPERM && !root))
    return sys_err("chown");
  if (type != AE_IFLNK) {
    // After chown, which clears setuid/setgid bits.
    if (fchmodat(parent_fd, base.c_str(), archive_entry_perm(e) & 07777, 0) != 0) return sys_err("chmod");
    // Via the parent fd's /proc link: the final name is not followed (lsetxattr).
    std::string proc_path = fmt::format("/proc/self/fd/{}/{}", parent_fd, base);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      if (!name || !keep_xattr(name)) continue;
      if (lsetxattr(proc_path.c_str(), name, value, size, 0) != 0) {
        if (errno == EPERM && !root) continue;
        return sys_err("setting xattr {}", name);
      }
    }
  }
  timespec times[2];
  times[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  times[0] = archive_entry_atime_is_set(e) ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)} : times[1];
  if (type == AE_IFDIR) {
    dir_times_.push_back({path, {times[0], times[1]}});
  } else if (utimensat(parent_fd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return sys_err("setting times");
  }
  return {};
}

Result<void> LayerApplier::set_root_metadata(archive_entry* e) {
  if (fchown(root_fd_, static_cast<uid_t>(archive_entry_uid(e)), static_cast<gid_t>(archive_entry_gid(e))) != 0 &&
      !(errno == EPERM && geteuid() != 0))
    return sys_err("chown");
  if (fchmod(root_fd_, archive_entry_perm(e) & 07777) != 0) return sys_err("chmod");
  timespec mtime{archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  dir_times_.push_back({"", {mtime, mtime}});
  return {};
}

void LayerApplier::apply_dir_times() {
  // Deepest first does not matter: setting a directory's times does not
  // touch its parent's.
  for (const auto& d : dir_times_) {
    int fd = openat2_in_root(root_fd_, d.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) continue;  // removed or replaced by a later entry
    futimens(fd, d.times);
    close(fd);
  }
}

}  // namespace

Result<void> apply_layer(int root_dirfd, const LayerSource& layer, const Limits& limits, UnpackState& state) {
  LayerApplier applier(root_dirfd, layer, limits, state);
  return applier.run();
}

}  // namespace vicvmm::image
