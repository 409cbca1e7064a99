// Small filesystem helpers for the image store: atomic writes, capped
// reads, flock-based locks and self-removing temporary directories.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::image {

// Writes `data` to `path` through a temp file in the same directory and a
// rename, so readers see the old file or the new one, never a mix.
Result<void> write_file_atomic(const std::string& path, std::string_view data);

// Reads a whole regular file of at most `cap` bytes (JSON from untrusted
// input is capped before it is parsed). `what` names it in errors.
Result<std::string> read_fd_capped(int fd, size_t cap, const std::string& what);
Result<std::string> read_file_capped(const std::string& path, size_t cap);

// A buffer for copying and hashing streams, left uninitialised: only what
// a read fills is touched (most image members are small, and zeroing a
// fresh 1 MiB buffer per file cost more than the file's own I/O). 128 KiB:
// reads of a file in the page cache gain nothing from larger ones.
class CopyBuffer {
 public:
  static constexpr size_t kSize = 128 << 10;
  char* data() { return bytes_.get(); }
  size_t size() const { return kSize; }

 private:
  std::unique_ptr<char[]> bytes_ = std::make_unique_for_overwrite<char[]>(kSize);
};

// An flock held for the object's lifetime.
class FileLock {
 public:
  static Result<FileLock> acquire(const std::string& path, bool exclusive);
  FileLock() = default;

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

// A directory made with mkdtemp, removed with everything in it (symlinks
// are removed, never followed) unless release()d.
class TempDir {
 public:
  static Result<TempDir> create(const std::string& parent, const std::string& prefix);
  TempDir() = default;
  TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  TempDir& operator=(TempDir&& o) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { remove(); }
  const std::string& path() const { return path_; }
  void remove();

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A temp file in `dir` unlinked on destruction unless renamed away by commit().
class TempFile {
 public:
  static Result<TempFile> create(const std::string& dir, const std::string& prefix);
  TempFile() = default;
  TempFile(TempFile&& o) noexcept : fd_(std::move(o.fd_)), path_(std::exchange(o.path_, {})) {}
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile();
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // fsyncs, closes and renames onto `dest`.
  Result<void> commit(const std::string& dest);

 private:
  TempFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
};

Result<void> write_all(int fd, const void* data, size_t len);

}  // namespace vicvmm::image
