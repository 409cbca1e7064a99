#include "image/fs_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace vicvmm::image {

Result<void> write_all(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_err("write");
    p += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

Result<void> write_file_atomic(const std::string& path, std::string_view data) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  VIC_ASSIGN(TempFile tmp, TempFile::create(dir.empty() ? "." : dir, ".tmp-"));
  if (auto r = write_all(tmp.fd(), data.data(), data.size()); !r) return with_context(r.error(), path);
  return tmp.commit(path);
}

Result<std::string> read_fd_capped(int fd, size_t cap, const std::string& what) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return sys_err("{}", what);
  if (!S_ISREG(st.st_mode)) return err("{}: not a regular file", what);
  if (static_cast<uint64_t>(st.st_size) > cap) return err("{}: larger than {} bytes", what, cap);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_err("reading {}", what);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > cap) return err("{}: larger than {} bytes", what, cap);
  }
  return out;
}

Result<std::string> read_file_capped(const std::string& path, size_t cap) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err("{}", path);
  return read_fd_capped(fd.get(), cap, path);
}

Result<FileLock> FileLock::acquire(const std::string& path, bool exclusive) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return sys_err("lock {}", path);
  while (flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH) != 0)
    if (errno != EINTR) return sys_err("flock {}", path);
  return FileLock(std::move(fd));
}

Result<TempDir> TempDir::create(const std::string& parent, const std::string& prefix) {
  std::string templ = parent + "/" + prefix + "XXXXXX";
  if (!mkdtemp(templ.data())) return sys_err("creating a temporary directory in {}", parent);
  return TempDir(std::move(templ));
}

TempDir& TempDir::operator=(TempDir&& o) noexcept {
  if (this != &o) {
    remove();
    path_ = std::exchange(o.path_, {});
  }
  return *this;
}

void TempDir::remove() {
  if (path_.empty()) return;
  std::error_code ec;
  // A layer may have made directories unwritable (0555): open them up first.
  for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec))
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
  }
  std::filesystem::remove_all(path_, ec);
  path_.clear();
}

Result<TempFile> TempFile::create(const std::string& dir, const std::string& prefix) {
  std::string templ = dir + "/" + prefix + "XXXXXX";
  int fd = mkostemp(templ.data(), O_CLOEXEC);
  if (fd < 0) return sys_err("creating a temporary file in {}", dir);
  return TempFile(UniqueFd(fd), std::move(templ));
}

TempFile::~TempFile() {
  if (!path_.empty()) unlink(path_.c_str());
}

Result<void> TempFile::commit(const std::string& dest) {
  if (fchmod(fd_.get(), 0644) != 0) return sys_err("chmod {}", path_);
  if (fsync(fd_.get()) != 0) return sys_err("fsync {}", path_);
  fd_.reset();
  if (rename(path_.c_str(), dest.c_str()) != 0) return sys_err("renaming {} to {}", path_, dest);
  path_.clear();
  return {};
}

}  // namespace vicvmm::image
