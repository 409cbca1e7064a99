// `image import`: a plain root filesystem (a tar, possibly compressed, or a
// directory) becomes a one-layer image; the layer is kept as an
// uncompressed tar so its digest is also its diff_id.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "image/archive_util.h"
#include "image/fs_util.h"
#include "image/records.h"
#include "image/store.h"

namespace vicvmm::image {

using json = nlohmann::json;

namespace {

std::string limit_message(uint64_t limit) {
  return fmt::format("more than {} bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)", limit);
}

// A (possibly compressed) tar file, decompressed into `out`.
Result<void> decompress_tar(const std::string& path, int out, const Limits& limits) {
  ArchiveReader a = new_raw_reader();
  if (!a) return err("libarchive: out of memory");
  if (archive_read_open_filename(a.get(), path.c_str(), kArchiveBlock) != ARCHIVE_OK)
    return err("not a tar archive: {}", archive_error(a.get()));
  archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK) return err("not a tar archive: {}", archive_error(a.get()));
  CopyBuffer buf;
  uint64_t total = 0;
  for (;;) {
    la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
    if (n < 0) return err("corrupt or truncated: {}", archive_error(a.get()));
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > limits.max_unpacked_bytes) return err("unpacks to {}", limit_message(limits.max_unpacked_bytes));
    VIC_TRY(write_all(out, buf.data(), static_cast<size_t>(n)));
  }
  if (total == 0) return err("empty file");
  return {};
}

// Reads every header of the tar at `path`: refuses what is not a tar, or is
// corrupt, before it becomes an image.
Result<void> check_tar(const std::string& path, const Limits& limits) {
  ArchiveReader a = new_tar_reader();
  if (!a) return err("libarchive: out of memory");
  if (archive_read_open_filename(a.get(), path.c_str(), kArchiveBlock) != ARCHIVE_OK)
    return err("not a tar archive: {}", archive_error(a.get()));
  uint64_t entries = 0;
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      return err("{}: {}", entries ? "corrupt or truncated tar" : "not a tar archive", archive_error(a.get()));
    if (++entries > limits.max_entries) return err("more than {} entries (limit)", limits.max_entries);
    if (archive_read_data_skip(a.get()) != ARCHIVE_OK) return err("corrupt or truncated tar: {}", archive_error(a.get()));
  }
  if (entries == 0) return err("not a tar archive (no entries)");
  return {};
}

// Writes directory `dir` as a pax tar to `out`: names relative to `dir`,
// symlinks not followed, hardlinks kept as links, sockets left out.
Result<void> tar_directory(const std::string& dir, int out, const Limits& limits) {
  ArchiveWriter w(archive_write_new());
  ArchiveReader disk(archive_read_disk_new());
  if (!w || !disk) return err("libarchive: out of memory");
  if (archive_write_set_format_pax_restricted(w.get()) != ARCHIVE_OK ||
      archive_write_add_filter_none(w.get()) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(w.get(), 1) != ARCHIVE_OK ||
      archive_write_open_fd(w.get(), out) != ARCHIVE_OK)
    return err("tar writer: {}", archive_error(w.get()));
  archive_read_disk_set_symlink_physical(disk.get());
  if (archive_read_disk_open(disk.get(), dir.c_str()) != ARCHIVE_OK) return err("{}", archive_error(disk.get()));
  struct ResolverFree {
    void operator()(archive_entry_linkresolver* r) const { archive_entry_linkresolver_free(r); }
  };
  std::unique_ptr<archive_entry_linkresolver, ResolverFree> links(archive_entry_linkresolver_new());
  archive_entry_linkresolver_set_strategy(links.get(), archive_format(w.get()));
  std::string prefix = dir;
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  prefix += '/';
  uint64_t bytes = 0, entries = 0;
  CopyBuffer buf;
  for (;;) {
    ArchiveEntry entry(archive_entry_new());
    int r = archive_read_next_header2(disk.get(), entry.get());
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return err("{}", archive_error(disk.get()));
    archive_read_disk_descend(disk.get());
    std::string name = archive_entry_pathname(entry.get()) ? archive_entry_pathname(entry.get()) : "";
    if (!name.starts_with(prefix)) continue;  // the directory itself: the image root keeps 0755 root:root
    name = name.substr(prefix.size());
    if (archive_entry_filetype(entry.get()) == AE_IFSOCK) continue;
    if (++entries > limits.max_entries) return err("more than {} entries (limit)", limits.max_entries);
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry* e = entry.get();
    archive_entry* spare = nullptr;
    archive_entry_linkify(links.get(), &e, &spare);
    if (!e) continue;
    if (archive_write_header(w.get(), e) < ARCHIVE_WARN) return err("{}: {}", name, archive_error(w.get()));
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || archive_entry_size(e) <= 0) continue;
    for (;;) {
      la_ssize_t n = archive_read_data(disk.get(), buf.data(), buf.size());
      if (n < 0) return err("{}: {}", name, archive_error(disk.get()));
      if (n == 0) break;
      bytes += static_cast<uint64_t>(n);
      if (bytes > limits.max_unpacked_bytes) return err("{}", limit_message(limits.max_unpacked_bytes));
      if (archive_write_data(w.get(), buf.data(), static_cast<size_t>(n)) < 0)
        return err("{}: {}", name, archive_error(w.get()));
    }
  }
  if (archive_write_close(w.get()) != ARCHIVE_OK) return err("tar writer: {}", archive_error(w.get()));
  return {};
}

std::string now_rfc3339() {
  time_t t = time(nullptr);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

Result<Image> Store::import_rootfs(const std::string& path, const std::string& name) {
  StorePaths paths{root_};
  std::string what = "image import " + path;
  auto tag = normalize_tag(name);
  if (!tag) return with_context(tag.error(), what);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return sys_err("{}", what);
  // A FIFO or device would block or never end: a pipe goes through `-`.
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && path != "/dev/stdin")
    return err("{}: not a regular file or directory", what);
  auto lock = FileLock::acquire(paths.lock(), true);
  if (!lock) return with_context(lock.error(), what);

  auto layer_tmp = TempFile::create(paths.tmp(), "import-");
  if (!layer_tmp) return with_context(layer_tmp.error(), what);
  if (S_ISDIR(st.st_mode)) {
    if (auto r = tar_directory(path, layer_tmp->fd(), limits_); !r) return with_context(r.error(), what);
  } else {
    if (auto r = decompress_tar(path, layer_tmp->fd(), limits_); !r) return with_context(r.error(), what);
    if (auto r = check_tar(layer_tmp->path(), limits_); !r) return with_context(r.error(), what);
  }
  UniqueFd layer_fd(::open(layer_tmp->path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!layer_fd) return sys_err("{}: {}", what, layer_tmp->path());

  std::vector<std::string> created;
  auto fail = [&](const Error& e) {
    for (const auto& b : created) unlink(b.c_str());
    return with_context(e, what);
  };
  auto blob = ingest_blob(paths, layer_fd.get(), "", -1, UINT64_MAX, &created);
  if (!blob) return fail(blob.error());

  std::string created_at = now_rfc3339();
  json config = {
      {"created", created_at},
      {"architecture", "amd64"},
      {"os", "linux"},
      {"config", {{"Env", json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", json::array({blob->digest})}}},
      {"history", json::array({{{"created", created_at}, {"created_by", "vicvmm image import"}}})},
  };
  std::string config_text = config.dump(-1, ' ', false, json::error_handler_t::replace);
  std::vector<std::string> diff_ids;
  auto parsed = parse_image_config(config_text, diff_ids);
  if (!parsed) return fail(parsed.error());
  ImageRecord r;
  r.image = std::move(*parsed);
  auto config_digest = ingest_blob_bytes(paths, config_text, &created);
  if (!config_digest) return fail(config_digest.error());
  r.config_digest = *config_digest;
  r.image.id = digest_hex(r.config_digest);
  r.image.layers.push_back({blob->digest, blob->digest, "application/vnd.oci.image.layer.v1.tar", blob->size});
  r.image.size = blob->size;
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config",
                    {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                     {"digest", r.config_digest},
                     {"size", config_text.size()}}},
                   {"layers", json::array({{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                            {"digest", blob->digest},
                                            {"size", blob->size}}})}};
  auto manifest_digest = ingest_blob_bytes(paths, manifest.dump(), &created);
  if (!manifest_digest) return fail(manifest_digest.error());
  r.manifest_digest = *manifest_digest;
  if (auto c = commit_image(paths, r, {*tag}); !c) return fail(c.error());
  r.image.tags = {*tag};
  return r.image;
}

}  // namespace vicvmm::image
