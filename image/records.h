// The store's metadata: image records (images/<id>.json), the tag table
// (tags.json), tag syntax, OCI image configs, and blob ingestion.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "image/digest.h"
#include "image/store.h"
#include "vmm/result.h"

namespace vicvmm::image {

inline constexpr size_t kMaxJsonBytes = 8u << 20;  // any JSON document from an input
inline constexpr size_t kMaxListEntries = 4096;     // images, manifests or layers in one document

// An image as stored: the public view plus the blobs it owns.
struct ImageRecord {
  Image image;
  std::string config_digest;    // "sha256:<id>"
  std::string manifest_digest;  // the OCI manifest (as shipped, or synthesized)
};

// Store layout.
struct StorePaths {
  std::string root;
  std::string blob(const std::string& digest) const { return root + "/blobs/sha256/" + digest_hex(digest); }
  std::string record(const std::string& id) const { return root + "/images/" + id + ".json"; }
  std::string erofs(const std::string& id) const { return root + "/erofs/" + id + ".erofs"; }
  std::string erofs_lock(const std::string& id) const { return root + "/erofs/" + id + ".lock"; }
  std::string tags() const { return root + "/tags.json"; }
  std::string lock() const { return root + "/lock"; }
  std::string tmp() const { return root + "/tmp"; }
};

// "name" -> "name:latest"; checks the syntax ([registry[:port]/]path:tag).
Result<std::string> normalize_tag(const std::string& text);

// Image config (OCI or Docker) -> the fields the store keeps; layers get
// their diff_ids from rootfs.diff_ids (the caller checks the count).
Result<Image> parse_image_config(std::string_view config_json, std::vector<std::string>& diff_ids);

std::string record_to_json(const ImageRecord& r);
Result<ImageRecord> record_from_json(std::string_view text, const std::string& what);
Result<ImageRecord> read_record(const StorePaths& paths, const std::string& id);
// Under the caller's store lock.
Result<void> write_record(const StorePaths& paths, const ImageRecord& r);

using TagTable = std::map<std::string, std::string>;  // "name:tag" -> id
Result<TagTable> read_tags(const StorePaths& paths);
Result<void> write_tags(const StorePaths& paths, const TagTable& tags);

// Copies `fd` into blobs/ while hashing it; refuses it unless it matches
// `expected_digest` (and `expected_size` when not -1). With an empty
// expected digest it is stored under whatever digest it has. At most
// `max_bytes` are read. Returns the digest and size.
// `created` collects the blobs that were not in the store before, so a
// refused load can take them out again.
Result<FileDigest> ingest_blob(const StorePaths& paths, int fd, const std::string& expected_digest,
                               int64_t expected_size, uint64_t max_bytes, std::vector<std::string>* created);
Result<std::string> ingest_blob_bytes(const StorePaths& paths, std::string_view data, std::vector<std::string>* created);

// "sha256:<hex>" of the decompressed content of a (possibly compressed)
// blob, reading at most `max_bytes` of output: a layer's diff_id.
Result<std::string> uncompressed_digest(const std::string& blob_path, uint64_t max_bytes);
// "gzip", "zstd", "xz", "bzip2" or "" (uncompressed) from the magic bytes.
Result<std::string> compression_of(const std::string& blob_path);

}  // namespace vicvmm::image

namespace vicvmm::image {
// Writes the record and points `tags` at it (each moved off any image it
// named before). Under the caller's exclusive store lock.
Result<void> commit_image(const StorePaths& paths, const ImageRecord& record, const std::vector<std::string>& tags);
// Every blob a record references.
std::vector<std::string> blobs_of(const ImageRecord& r);
// Unlinks those of `candidates` no image record references. Under the
// caller's exclusive store lock.
void drop_unused_blobs(const StorePaths& paths, const std::vector<std::string>& candidates);
}  // namespace vicvmm::image
