// libarchive glue: owners for archive handles and a reader that hashes the
// bytes it hands to libarchive (so a blob is verified while it is unpacked).
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string>
#include <vector>

#include "image/digest.h"
#include "vmm/result.h"

namespace vicvmm::image {

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ArchiveEntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchiveReader = std::unique_ptr<archive, ArchiveReadFree>;
using ArchiveWriter = std::unique_ptr<archive, ArchiveWriteFree>;
using ArchiveEntry = std::unique_ptr<archive_entry, ArchiveEntryFree>;

// A tar reader (ustar, pax, GNU) accepting the compressions images use:
// none, gzip, zstd, xz/lzma, bzip2, lz4. Only built-in decoders: no
// external decompressor is ever run on untrusted input.
ArchiveReader new_tar_reader();
// libarchive's read block: 128 KiB, as large as reads usefully get and
// small enough for malloc's (and ASan's) ordinary size classes, where a
// 1 MiB block was an mmap, page faults and an munmap per archive.
constexpr size_t kArchiveBlock = 128 << 10;
// A reader returning the (decompressed) byte stream as-is, for diff_ids.
ArchiveReader new_raw_reader();

// Feeds a file descriptor to libarchive, hashing every byte read.
class HashingSource {
 public:
  explicit HashingSource(int fd) : fd_(fd), buf_(kArchiveBlock) {}
  // archive_read_open on this source; the source must outlive the reader.
  int open(archive* a);
  // Hashes whatever libarchive did not read (tar padding after the end
  // marker), then returns "sha256:<hex>" of the whole input.
  Result<std::string> finish();
  uint64_t bytes() const { return bytes_; }
  int read_errno() const { return read_errno_; }

 private:
  static la_ssize_t read_cb(archive* a, void* self, const void** buf);
  int fd_;
  std::vector<char> buf_;
  Sha256 hash_;
  uint64_t bytes_ = 0;
  int read_errno_ = 0;
};

// The libarchive error as text, never null.
std::string archive_error(archive* a);

}  // namespace vicvmm::image
