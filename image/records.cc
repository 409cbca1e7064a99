#include "image/records.h"

#include <fcntl.h>
#include <unistd.h>

#include <dirent.h>

#include <cctype>
#include <set>
#include <nlohmann/json.hpp>

#include "image/archive_util.h"
#include "image/fs_util.h"

namespace vicvmm::image {

using json = nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; }

std::string str_at(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<std::string> strings_at(const json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.is_object()) return out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it)
    if (v.is_string() && out.size() < kMaxListEntries) out.push_back(v.get<std::string>());
  return out;
}

// What an image config and the store's own record share: the image's
// created/architecture/os and its run config (OCI "config" object, whose
// ExposedPorts the callers read, each in its own shape). Returns "config".
json::const_iterator read_common(const json& j, Image& img) {
  img.created = str_at(j, "created");
  img.architecture = str_at(j, "architecture");
  img.os = str_at(j, "os");
  auto cfg = j.find("config");
  if (cfg != j.end() && cfg->is_object()) {
    img.config.entrypoint = strings_at(*cfg, "Entrypoint");
    img.config.cmd = strings_at(*cfg, "Cmd");
    img.config.env = strings_at(*cfg, "Env");
    img.config.working_dir = str_at(*cfg, "WorkingDir");
    img.config.user = str_at(*cfg, "User");
  }
  return cfg;
}

uint64_t u64_at(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

bool name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '/' || c == ':';
}

}  // namespace

Result<std::string> normalize_tag(const std::string& text) {
  std::string name = text, tag = "latest";
  size_t colon = text.rfind(':');
  size_t slash = text.rfind('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    name = text.substr(0, colon);
    tag = text.substr(colon + 1);
  }
  // Docker Hub's implicit names, as skopeo and podman spell them out; to a
  // fixed point, so that normalizing a normalized name changes nothing
  // ("docker.io/docker.io/x" once became "docker.io/x", then "x").
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view hub : {"docker.io/library/", "docker.io/"})
      if (name.starts_with(hub) && name.size() > hub.size()) {
        name = name.substr(hub.size());
        stripped = true;
        break;
      }
  }
  if (name.empty() || name.size() > 255) return err("image name '{}': must be 1 to 255 characters", text);
  for (char c : name)
    if (!name_char(c)) return err("image name '{}': invalid character '{}'", text, c);
  if (name.front() == '/' || name.back() == '/' || name.find("//") != std::string::npos ||
      name.find("..") != std::string::npos || !std::isalnum(static_cast<unsigned char>(name.front())))
    return err("image name '{}': malformed", text);
  if (tag.empty() || tag.size() > 128) return err("image tag in '{}': must be 1 to 128 characters", text);
  for (char c : tag)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      return err("image tag in '{}': invalid character '{}'", text, c);
  if (tag.front() == '.' || tag.front() == '-') return err("image tag in '{}': malformed", text);
  return name + ":" + tag;
}

Result<Image> parse_image_config(std::string_view config_json, std::vector<std::string>& diff_ids) {
  json j = json::parse(config_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return err("config is not a JSON object");
  Image img;
  auto cfg = read_common(j, img);
  if (cfg != j.end() && cfg->is_object()) {
    auto ports = cfg->find("ExposedPorts");
    if (ports != cfg->end() && ports->is_object())
      for (const auto& [port, _] : ports->items())
        if (img.config.exposed_ports.size() < kMaxListEntries) img.config.exposed_ports.push_back(port);
  }
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) return err("config has no rootfs");
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) return err("config has no rootfs.diff_ids");
  if (ids->size() > kMaxListEntries) return err("config has more than {} layers", kMaxListEntries);
  diff_ids.clear();
  for (const auto& v : *ids) {
    if (!v.is_string() || !valid_digest(v.get<std::string>()))
      return err("config has a malformed diff_id (want sha256:<64 hex digits>)");
    diff_ids.push_back(v.get<std::string>());
  }
  return img;
}

std::string record_to_json(const ImageRecord& r) {
  const Image& img = r.image;
  json layers = json::array();
  for (const auto& l : img.layers)
    layers.push_back({{"digest", l.digest}, {"diff_id", l.diff_id}, {"media_type", l.media_type}, {"size", l.size}});
  json ports = json::array();
  for (const auto& p : img.config.exposed_ports) ports.push_back(p);
  json j = {
      {"id", img.id},
      {"created", img.created},
      {"architecture", img.architecture},
      {"os", img.os},
      {"config",
       {{"Entrypoint", img.config.entrypoint},
        {"Cmd", img.config.cmd},
        {"Env", img.config.env},
        {"WorkingDir", img.config.working_dir},
        {"User", img.config.user},
        {"ExposedPorts", ports}}},
      {"layers", layers},
      {"size", img.size},
      {"config_digest", r.config_digest},
      {"manifest_digest", r.manifest_digest},
  };
  return dump(j);
}

Result<ImageRecord> record_from_json(std::string_view text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return err("{}: not a JSON object", what);
  ImageRecord r;
  Image& img = r.image;
  img.id = str_at(j, "id");
  auto cfg = read_common(j, img);
  if (cfg != j.end() && cfg->is_object()) img.config.exposed_ports = strings_at(*cfg, "ExposedPorts");
  auto layers = j.find("layers");
  if (layers != j.end() && layers->is_array()) {
    for (const auto& l : *layers) {
      Layer layer{str_at(l, "digest"), str_at(l, "diff_id"), str_at(l, "media_type"), u64_at(l, "size")};
      if (!valid_digest(layer.digest)) return err("{}: malformed layer digest", what);
      img.layers.push_back(std::move(layer));
    }
  }
  img.size = u64_at(j, "size");
  r.config_digest = str_at(j, "config_digest");
  r.manifest_digest = str_at(j, "manifest_digest");
  if (!valid_digest("sha256:" + img.id) || r.config_digest != "sha256:" + img.id)
    return err("{}: malformed image id", what);
  return r;
}

Result<ImageRecord> read_record(const StorePaths& paths, const std::string& id) {
  VIC_ASSIGN(std::string text, read_file_capped(paths.record(id), kMaxJsonBytes));
  return record_from_json(text, paths.record(id));
}

Result<void> write_record(const StorePaths& paths, const ImageRecord& r) {
  return write_file_atomic(paths.record(r.image.id), record_to_json(r));
}

Result<TagTable> read_tags(const StorePaths& paths) {
  TagTable tags;
  if (access(paths.tags().c_str(), F_OK) != 0) return tags;
  VIC_ASSIGN(std::string text, read_file_capped(paths.tags(), kMaxJsonBytes));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return err("{}: not a JSON object", paths.tags());
  for (const auto& [name, id] : j.items())
    if (id.is_string()) tags[name] = id.get<std::string>();
  return tags;
}

Result<void> write_tags(const StorePaths& paths, const TagTable& tags) {
  json j = json::object();
  for (const auto& [name, id] : tags) j[name] = id;
  return write_file_atomic(paths.tags(), dump(j));
}

Result<FileDigest> ingest_blob(const StorePaths& paths, int fd, const std::string& expected_digest,
                               int64_t expected_size, uint64_t max_bytes, std::vector<std::string>* created) {
  VIC_ASSIGN(TempFile tmp, TempFile::create(paths.tmp(), "blob-"));
  Sha256 hash;
  FileDigest got;
  CopyBuffer buf;
  uint64_t cap = expected_size >= 0 ? std::min<uint64_t>(max_bytes, static_cast<uint64_t>(expected_size)) : max_bytes;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_err("read");
    if (n == 0) break;
    got.size += static_cast<uint64_t>(n);
    if (got.size > cap) {
      if (expected_size >= 0 && got.size > static_cast<uint64_t>(expected_size))
        return err("size mismatch (more than the {} bytes its descriptor says)", expected_size);
      return err("larger than {} bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)", max_bytes);
    }
    hash.update(buf.data(), static_cast<size_t>(n));
    VIC_TRY(write_all(tmp.fd(), buf.data(), static_cast<size_t>(n)));
  }
  got.digest = hash.digest();
  if (expected_size >= 0 && got.size != static_cast<uint64_t>(expected_size))
    return err("size mismatch (got {} bytes, descriptor says {})", got.size, expected_size);
  if (!expected_digest.empty() && got.digest != expected_digest) return err("digest mismatch (got {})", got.digest);
  if (created && access(paths.blob(got.digest).c_str(), F_OK) != 0) created->push_back(paths.blob(got.digest));
  VIC_TRY(tmp.commit(paths.blob(got.digest)));
  return got;
}

Result<std::string> ingest_blob_bytes(const StorePaths& paths, std::string_view data,
                                      std::vector<std::string>* created) {
  std::string digest = sha256_of(data);
  if (created && access(paths.blob(digest).c_str(), F_OK) != 0) created->push_back(paths.blob(digest));
  VIC_ASSIGN(TempFile tmp, TempFile::create(paths.tmp(), "blob-"));
  VIC_TRY(write_all(tmp.fd(), data.data(), data.size()));
  VIC_TRY(tmp.commit(paths.blob(digest)));
  return digest;
}

Result<std::string> compression_of(const std::string& blob_path) {
  UniqueFd fd(open(blob_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err("{}", blob_path);
  unsigned char m[6] = {};
  ssize_t n = pread(fd.get(), m, sizeof m, 0);
  if (n < 0) return sys_err("reading {}", blob_path);
  if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) return std::string("gzip");
  if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) return std::string("zstd");
  if (n >= 6 && m[0] == 0xfd && m[1] == '7' && m[2] == 'z' && m[3] == 'X' && m[4] == 'Z' && m[5] == 0)
    return std::string("xz");
  if (n >= 3 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h') return std::string("bzip2");
  return std::string();
}

Result<std::string> uncompressed_digest(const std::string& blob_path, uint64_t max_bytes) {
  VIC_ASSIGN(std::string compression, compression_of(blob_path));
  if (compression.empty()) {
    VIC_ASSIGN(FileDigest d, sha256_file(blob_path));
    return d.digest;
  }
  ArchiveReader a = new_raw_reader();
  if (!a) return err("libarchive: out of memory");
  if (archive_read_open_filename(a.get(), blob_path.c_str(), kArchiveBlock) != ARCHIVE_OK)
    return err("{}", archive_error(a.get()));
  archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK) return err("{}: {}", compression, archive_error(a.get()));
  Sha256 hash;
  uint64_t total = 0;
  CopyBuffer buf;
  for (;;) {
    la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
    if (n < 0) return err("corrupt {} stream: {}", compression, archive_error(a.get()));
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > max_bytes)
      return err("unpacks to more than {} bytes (limit; VICVMM_IMAGE_MAX_SIZE / --max-size)", max_bytes);
    hash.update(buf.data(), static_cast<size_t>(n));
  }
  return hash.digest();
}

}  // namespace vicvmm::image

namespace vicvmm::image {
std::vector<std::string> blobs_of(const ImageRecord& r) {
  std::vector<std::string> blobs = {r.config_digest, r.manifest_digest};
  for (const auto& l : r.image.layers) blobs.push_back(l.digest);
  return blobs;
}

void drop_unused_blobs(const StorePaths& paths, const std::vector<std::string>& candidates) {
  std::set<std::string> used;
  std::string dir = paths.root + "/images";
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() != 64 + 5 || !n.ends_with(".json")) continue;
      auto r = read_record(paths, n.substr(0, 64));
      if (!r) continue;
      for (auto& b : blobs_of(*r)) used.insert(std::move(b));
    }
    closedir(d);
  }
  for (const auto& b : candidates)
    if (valid_digest(b) && !used.count(b)) unlink(paths.blob(b).c_str());
}

Result<void> commit_image(const StorePaths& paths, const ImageRecord& record, const std::vector<std::string>& tags) {
  // The same config can arrive with other layer blobs (gzip in an OCI
  // layout, plain tars in a docker-archive): the new record replaces the
  // old one, and the old one's blobs go unless another image uses them.
  auto previous = read_record(paths, record.image.id);
  VIC_TRY(write_record(paths, record));
  if (previous) drop_unused_blobs(paths, blobs_of(*previous));
  if (tags.empty()) return {};
  VIC_ASSIGN(TagTable table, read_tags(paths));
  for (const auto& t : tags) table[t] = record.image.id;
  return write_tags(paths, table);
}
}  // namespace vicvmm::image
