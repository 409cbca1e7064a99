#include "image/load_input.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <span>

#include "image/archive_util.h"
#include "image/safe_path.h"

namespace vicvmm::image {

namespace {

Result<void> extract_member(archive* a, archive_entry* e, int root_fd, const std::string& name, uint64_t& bytes,
                            const Limits& limits, std::span<char> buf) {
  mode_t type = archive_entry_filetype(e);
  if (archive_entry_hardlink(e)) return err("hardlinks are not expected in an image archive");
  if (name.empty()) return {};
  auto [dir, base] = split_parent(name);
  if (type == AE_IFDIR) {
    VIC_TRY(open_dir_in_root(root_fd, name, /*create=*/true));
    return {};
  }
  VIC_ASSIGN(UniqueFd parent, open_dir_in_root(root_fd, dir, /*create=*/true));
  if (type == AE_IFLNK) {
    // docker save links identical layers to each other; anything that would
    // leave the archive (absolute or climbing out) is refused.
    const char* target = archive_entry_symlink(e);
    if (!target || !*target) return err("symlink without a target");
    if (target[0] == '/' || symlink_escapes(name, target))
      return err("symlink to {} points outside the archive", target);
    if (symlinkat(target, parent.get(), base.c_str()) != 0) return sys_err("symlink");
    return {};
  }
  if (type != AE_IFREG) return err("not a regular file, directory or symlink");
  UniqueFd out(openat(parent.get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return errno == EEXIST ? err("appears twice") : sys_err("create");
  for (;;) {
    la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
    if (n < 0) return err("corrupt or truncated archive: {}", archive_error(a));
    if (n == 0) break;
    bytes += static_cast<uint64_t>(n);
    if (bytes > limits.max_unpacked_bytes)
      return err("archive holds more than {} bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)",
                 limits.max_unpacked_bytes);
    VIC_TRY(write_all(out.get(), buf.data(), static_cast<size_t>(n)));
  }
  return {};
}

Result<TempDir> extract_tar(const StorePaths& paths, int fd, const Limits& limits) {
  VIC_ASSIGN(TempDir dir, TempDir::create(paths.tmp(), "load-"));
  UniqueFd root(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_err("{}", dir.path());
  ArchiveReader a = new_tar_reader();
  if (!a) return err("libarchive: out of memory");
  if (archive_read_open_fd(a.get(), fd, kArchiveBlock) != ARCHIVE_OK)
    return err("not a tar archive or an image directory: {}", archive_error(a.get()));
  uint64_t bytes = 0, entries = 0;
  CopyBuffer buf;  // one for every member
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      if (entries == 0) return err("not a tar archive or an image directory: {}", archive_error(a.get()));
      return err("corrupt or truncated archive: {}", archive_error(a.get()));
    }
    if (++entries > std::min<uint64_t>(limits.max_entries, 100000))
      return err("more than {} members", std::min<uint64_t>(limits.max_entries, 100000));
    const char* raw = archive_entry_pathname(e);
    if (!raw) return err("a member name is not valid in this locale");
    auto name = normalize_member(raw);
    if (!name) return err("member {}: {}", raw, name.error().message);
    if (auto x = extract_member(a.get(), e, root.get(), *name, bytes, limits, {buf.data(), buf.size()}); !x)
      return err("member {}: {}", raw, x.error().message);
  }
  return dir;
}

}  // namespace

std::string derive_name(const std::string& path) {
  std::string base = path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  if (size_t slash = base.rfind('/'); slash != std::string::npos) base = base.substr(slash + 1);
  if (base == "-" || base == "." || base == "..") return "image";
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (const char* ext : {".tar", ".tgz", ".gz", ".zst", ".xz", ".bz2", ".oci", ".docker"}) {
      std::string_view e(ext);
      if (base.size() > e.size() && base.ends_with(e)) {
        base.resize(base.size() - e.size());
        stripped = true;
      }
    }
  }
  std::string out;
  for (char c : base) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = std::isalnum(u) || c == '.' || c == '_' || c == '-';
    out += ok ? static_cast<char>(std::tolower(u)) : '-';
  }
  while (!out.empty() && !std::isalnum(static_cast<unsigned char>(out.front()))) out.erase(0, 1);
  if (out.size() > 128) out.resize(128);
  return out.empty() ? "image" : out;
}

Result<UniqueFd> open_member(int dir_fd, const std::string& name) {
  auto clean = normalize_member(name);
  if (!clean) return err("{}: {}", name, clean.error().message);
  int fd = openat2_in_root(dir_fd, *clean, O_RDONLY);
  if (fd < 0) {
    errno = -fd;
    return sys_err("{}", name);
  }
  UniqueFd out(fd);
  struct stat st {};
  if (fstat(fd, &st) != 0) return sys_err("{}", name);
  if (!S_ISREG(st.st_mode)) return err("{}: not a regular file", name);
  return out;
}

Result<LoadInput> open_load_input(const StorePaths& paths, const std::string& path, const Limits& limits) {
  LoadInput in;
  in.derived_name = derive_name(path);
  UniqueFd source;
  if (path == "-") {
    // Spooled first: libarchive and the format probe need to see it twice.
    VIC_ASSIGN(TempFile spool, TempFile::create(paths.tmp(), "stdin-"));
    CopyBuffer buf;
    uint64_t total = 0;
    for (;;) {
      ssize_t n = read(0, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return sys_err("reading standard input");
      if (n == 0) break;
      total += static_cast<uint64_t>(n);
      if (total > limits.max_unpacked_bytes)
        return err("standard input: more than {} bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)",
                   limits.max_unpacked_bytes);
      VIC_TRY(write_all(spool.fd(), buf.data(), static_cast<size_t>(n)));
    }
    if (total == 0) return err("standard input is empty");
    source.reset(open(spool.path().c_str(), O_RDONLY | O_CLOEXEC));  // unlinked when `spool` goes
    if (!source) return sys_err("{}", spool.path());
  } else {
    // O_NONBLOCK: a FIFO must not block the open (a pipe goes as "-").
    source.reset(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!source) return sys_err("{}", path);
    struct stat st {};
    if (fstat(source.get(), &st) != 0) return sys_err("{}", path);
    if (S_ISDIR(st.st_mode)) {
      in.dir = std::move(source);
      return in;
    }
    if (!S_ISREG(st.st_mode)) return err("{}: not a regular file or directory (give a pipe as -)", path);
    fcntl(source.get(), F_SETFL, fcntl(source.get(), F_GETFL) & ~O_NONBLOCK);
  }
  VIC_ASSIGN(in.extracted, extract_tar(paths, source.get(), limits));
  in.dir.reset(open(in.extracted.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!in.dir) return sys_err("{}", in.extracted.path());
  return in;
}

}  // namespace vicvmm::image
