// Builds tar archives (hostile ones included) with libarchive's write API
// for the image store tests, and small filesystem helpers.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/subprocess.h"

namespace vicvmm::test {

struct TarMember {
  std::string name;
  char type = 'f';  // f file, d dir, l symlink, h hardlink, c char device, p fifo
  std::string data;  // file content
  std::string link;  // symlink or hardlink target
  mode_t mode = 0644;
  int64_t uid = 0, gid = 0;
  unsigned dev_major = 0, dev_minor = 0;
  std::map<std::string, std::string> xattrs;
  int64_t declared_size = -1;  // header size when it should differ from data (a lie)
};

inline TarMember tar_file(std::string name, std::string data, mode_t mode = 0644) {
  TarMember m;
  m.name = std::move(name);
  m.data = std::move(data);
  m.mode = mode;
  return m;
}
inline TarMember tar_dir(std::string name, mode_t mode = 0755) {
  TarMember m;
  m.name = std::move(name);
  m.type = 'd';
  m.mode = mode;
  return m;
}
inline TarMember tar_symlink(std::string name, std::string target) {
  TarMember m;
  m.name = std::move(name);
  m.type = 'l';
  m.link = std::move(target);
  m.mode = 0777;
  return m;
}
inline TarMember tar_hardlink(std::string name, std::string target) {
  TarMember m;
  m.name = std::move(name);
  m.type = 'h';
  m.link = std::move(target);
  return m;
}

// Writes a pax tar (optionally gzip-compressed) of `members` to `path`.
enum class Compression { kNone, kGzip, kZstd };

inline void write_tar(const std::string& path, const std::vector<TarMember>& members, Compression c) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
  archive_write_open_filename(a, path.c_str());
  for (const auto& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_uid(e, m.uid);
    archive_entry_set_gid(e, m.gid);
    archive_entry_set_mtime(e, 1700000000, 0);
    archive_entry_set_perm(e, m.mode);
    switch (m.type) {
      case 'd': archive_entry_set_filetype(e, AE_IFDIR); break;
      case 'l':
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, m.link.c_str());
        break;
      case 'h':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, m.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      case 'c':
        archive_entry_set_filetype(e, AE_IFCHR);
        archive_entry_set_rdevmajor(e, m.dev_major);
        archive_entry_set_rdevminor(e, m.dev_minor);
        break;
      case 'p': archive_entry_set_filetype(e, AE_IFIFO); break;
      default:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, m.declared_size >= 0 ? m.declared_size : static_cast<int64_t>(m.data.size()));
    }
    for (const auto& [k, v] : m.xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    archive_write_header(a, e);
    if (m.type == 'f' && !m.data.empty()) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

inline void write_tar(const std::string& path, const std::vector<TarMember>& members, bool gzip = false) {
  write_tar(path, members, gzip ? Compression::kGzip : Compression::kNone);
}

inline void spit(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// Entries directly in `dir` (0 when it does not exist).
inline size_t count_entries(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    ++n;
  return n;
}

}  // namespace vicvmm::test
