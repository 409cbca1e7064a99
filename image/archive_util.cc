#include "image/archive_util.h"

#include <unistd.h>

#include <cerrno>

namespace vicvmm::image {

namespace {
// libarchive's built-in decompressors only (no external programs).
ArchiveReader new_reader_with_filters() {
  ArchiveReader a(archive_read_new());
  if (!a) return a;
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_filter_lzma(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_lz4(a.get());
  return a;
}
}  // namespace

ArchiveReader new_tar_reader() {
  ArchiveReader a = new_reader_with_filters();
  if (a) archive_read_support_format_tar(a.get());
  return a;
}

ArchiveReader new_raw_reader() {
  ArchiveReader a = new_reader_with_filters();
  if (a) archive_read_support_format_raw(a.get());
  return a;
}

int HashingSource::open(archive* a) { return archive_read_open(a, this, nullptr, &HashingSource::read_cb, nullptr); }

la_ssize_t HashingSource::read_cb(archive* a, void* self, const void** buf) {
  auto* s = static_cast<HashingSource*>(self);
  for (;;) {
    ssize_t n = read(s->fd_, s->buf_.data(), s->buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s->read_errno_ = errno;
      archive_set_error(a, errno, "read failed");
      return -1;
    }
    s->hash_.update(s->buf_.data(), static_cast<size_t>(n));
    s->bytes_ += static_cast<uint64_t>(n);
    *buf = s->buf_.data();
    return n;
  }
}

Result<std::string> HashingSource::finish() {
  for (;;) {
    ssize_t n = read(fd_, buf_.data(), buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_err("read");
    if (n == 0) break;
    hash_.update(buf_.data(), static_cast<size_t>(n));
    bytes_ += static_cast<uint64_t>(n);
  }
  return hash_.digest();
}

std::string archive_error(archive* a) {
  const char* s = a ? archive_error_string(a) : nullptr;
  return s ? s : "unknown libarchive error";
}

}  // namespace vicvmm::image
