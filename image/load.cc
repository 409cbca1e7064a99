// `image load`: docker-archive (docker/podman save) and OCI image layouts.
// Every blob is hashed on its way into the store and checked against what
// the input claims (descriptor digest and size, config diff_ids).
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>

#include "image/digest.h"
#include "image/fs_util.h"
#include "image/load_input.h"
#include "image/records.h"
#include "image/store.h"

namespace vicvmm::image {

using json = nlohmann::json;

namespace {

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char* kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar";

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) : d; }

std::string str_at(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<json> parse_json(std::string_view text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return err("{}: not valid JSON", what);
  return j;
}

Result<json> read_member_json(int dir_fd, const std::string& name) {
  VIC_ASSIGN(UniqueFd fd, open_member(dir_fd, name));
  VIC_ASSIGN(std::string text, read_fd_capped(fd.get(), kMaxJsonBytes, name));
  return parse_json(text, name);
}

// The media type a layer blob is stored under, from its bytes.
Result<std::string> layer_media_type(const std::string& blob_path) {
  VIC_ASSIGN(std::string compression, compression_of(blob_path));
  return compression.empty() ? std::string(kOciLayer) : std::string(kOciLayer) + "+" + compression;
}

// Checks a stored layer against the diff_id its config gives it.
Result<void> check_diff_id(const StorePaths& paths, const Layer& layer, const Limits& limits) {
  VIC_ASSIGN(std::string compression, compression_of(paths.blob(layer.digest)));
  if (compression.empty() && layer.diff_id == layer.digest) return {};  // verified on the way in
  if (compression.empty()) return err("diff_id mismatch (config says {}, got {})", layer.diff_id, layer.digest);
  auto got = uncompressed_digest(paths.blob(layer.digest), limits.max_unpacked_bytes);
  if (!got) return tl::unexpected(got.error());
  if (*got != layer.diff_id) return err("diff_id mismatch (config says {}, got {})", layer.diff_id, *got);
  return {};
}

std::string synthesize_manifest(const ImageRecord& r, uint64_t config_size) {
  json layers = json::array();
  for (const auto& l : r.image.layers)
    layers.push_back({{"mediaType", l.media_type}, {"digest", l.digest}, {"size", l.size}});
  json m = {{"schemaVersion", 2},
            {"mediaType", kOciManifest},
            {"config",
             {{"mediaType", "application/vnd.oci.image.config.v1+json"},
              {"digest", r.config_digest},
              {"size", config_size}}},
            {"layers", layers}};
  return m.dump(-1, ' ', false, json::error_handler_t::replace);
}

// A JSON blob of an OCI layout, checked against its descriptor and stored.
Result<std::string> read_blob_json(const StorePaths& paths, int dir_fd, const json& desc, const std::string& what,
                                   std::vector<std::string>* created, std::string* digest_out) {
  std::string digest = str_at(desc, "digest");
  if (!valid_digest(digest)) return err("{}: malformed digest '{}' (want sha256:<64 hex digits>)", what, digest);
  auto size_it = desc.find("size");
  if (size_it == desc.end() || !size_it->is_number_unsigned()) return err("{} {}: descriptor has no size", what, digest);
  uint64_t size = size_it->get<uint64_t>();
  if (size > kMaxJsonBytes) return err("{} {}: larger than {} bytes", what, digest, kMaxJsonBytes);
  VIC_ASSIGN(UniqueFd fd, open_member(dir_fd, "blobs/sha256/" + digest_hex(digest)));
  VIC_ASSIGN(std::string text, read_fd_capped(fd.get(), kMaxJsonBytes, what + " " + digest));
  if (text.size() != size) return err("{} {}: size mismatch (got {} bytes, descriptor says {})", what, digest, text.size(), size);
  std::string got = sha256_of(text);
  if (got != digest) return err("{} {}: digest mismatch (got {})", what, digest, got);
  VIC_TRY(ingest_blob_bytes(paths, text, created));
  if (digest_out) *digest_out = digest;
  return text;
}

class Loader {
 public:
  Loader(const StorePaths& paths, const Limits& limits, LoadInput& input)
      : paths_(paths), limits_(limits), in_(input) {}

  Result<std::vector<Image>> docker_archive();
  Result<std::vector<Image>> oci_layout();
  // Blobs this load added; removed again when the load is refused.
  void rollback() {
    for (const auto& b : created_) unlink(b.c_str());
  }

 private:
  Result<std::string> oci_manifest(const json& desc, int depth, std::string& manifest_digest);
  Result<ImageRecord> oci_image(const json& desc);
  void add(ImageRecord r, const std::vector<std::string>& tags);
  Result<std::vector<Image>> commit();

  const StorePaths& paths_;
  const Limits& limits_;
  LoadInput& in_;
  std::map<std::string, std::pair<ImageRecord, std::vector<std::string>>> images_;  // by id, in input order below
  std::vector<std::string> order_;
  std::vector<std::string> created_;
};

void Loader::add(ImageRecord r, const std::vector<std::string>& tags) {
  auto [it, fresh] = images_.try_emplace(r.image.id, std::move(r), std::vector<std::string>{});
  if (fresh) order_.push_back(it->first);
  for (const auto& t : tags)
    if (std::find(it->second.second.begin(), it->second.second.end(), t) == it->second.second.end())
      it->second.second.push_back(t);
}

// Records and tags are written only once every image of the input checked out.
Result<std::vector<Image>> Loader::commit() {
  std::vector<Image> out;
  for (const auto& id : order_) {
    auto& [record, tags] = images_.at(id);
    VIC_TRY(commit_image(paths_, record, tags));
    Image img = record.image;
    img.tags = tags;
    out.push_back(std::move(img));
  }
  return out;
}

Result<std::vector<Image>> Loader::docker_archive() {
  VIC_ASSIGN(json manifest, read_member_json(in_.dir.get(), "manifest.json"));
  if (!manifest.is_array() || manifest.empty()) return err("manifest.json: not a non-empty array");
  if (manifest.size() > kMaxListEntries) return err("manifest.json: more than {} images", kMaxListEntries);
  for (size_t i = 0; i < manifest.size(); ++i) {
    const json& item = manifest[i];
    std::string what = fmt::format("manifest.json[{}]", i);
    std::string config_name = str_at(item, "Config");
    if (config_name.empty()) return err("{}: no Config", what);
    VIC_ASSIGN(UniqueFd config_fd, open_member(in_.dir.get(), config_name));
    VIC_ASSIGN(std::string config, read_fd_capped(config_fd.get(), kMaxJsonBytes, config_name));
    std::vector<std::string> diff_ids;
    auto parsed = parse_image_config(config, diff_ids);
    if (!parsed) return with_context(parsed.error(), config_name);
    ImageRecord r;
    r.image = std::move(*parsed);
    VIC_ASSIGN(r.config_digest, ingest_blob_bytes(paths_, config, &created_));
    r.image.id = digest_hex(r.config_digest);

    auto layers = item.find("Layers");
    if (layers == item.end() || !layers->is_array()) return err("{}: no Layers", what);
    if (layers->size() != diff_ids.size())
      return err("{}: {} layers, but its config lists {} diff_ids", what, layers->size(), diff_ids.size());
    for (size_t l = 0; l < layers->size(); ++l) {
      if (!(*layers)[l].is_string()) return err("{}: Layers[{}] is not a string", what, l);
      std::string name = (*layers)[l].get<std::string>();
      VIC_ASSIGN(UniqueFd fd, open_member(in_.dir.get(), name));
      auto blob = ingest_blob(paths_, fd.get(), "", -1, limits_.max_unpacked_bytes, &created_);
      if (!blob) return err("layer {}: {}", name, blob.error().message);
      Layer layer{blob->digest, diff_ids[l], "", blob->size};
      VIC_ASSIGN(layer.media_type, layer_media_type(paths_.blob(layer.digest)));
      if (auto c = check_diff_id(paths_, layer, limits_); !c)
        return err("layer {} ({}): {}", short_digest(layer.digest), name, c.error().message);
      r.image.size += layer.size;
      r.image.layers.push_back(std::move(layer));
    }
    std::string m = synthesize_manifest(r, config.size());
    VIC_ASSIGN(r.manifest_digest, ingest_blob_bytes(paths_, m, &created_));

    std::vector<std::string> tags;
    auto repo_tags = item.find("RepoTags");
    if (repo_tags != item.end() && repo_tags->is_array()) {
      for (const auto& t : *repo_tags) {
        if (!t.is_string()) continue;
        VIC_ASSIGN(std::string tag, normalize_tag(t.get<std::string>()));
        tags.push_back(tag);
      }
    }
    add(std::move(r), tags);
  }
  return commit();
}

// Follows image indexes down to one manifest (linux/amd64 where a platform
// is given); returns its JSON text and digest.
Result<std::string> Loader::oci_manifest(const json& desc, int depth, std::string& manifest_digest) {
  if (depth > 4) return err("image indexes nested more than 4 deep");
  std::string media = str_at(desc, "mediaType");
  std::string digest_seen;
  VIC_ASSIGN(std::string text, read_blob_json(paths_, in_.dir.get(), desc, "manifest", &created_, &digest_seen));
  VIC_ASSIGN(json j, parse_json(text, "manifest " + digest_seen));
  if (!j.is_object()) return err("manifest {}: not an object", digest_seen);
  std::string inner_media = str_at(j, "mediaType");
  bool is_index = media == kOciIndex || media == kDockerManifestList || inner_media == kOciIndex ||
                  inner_media == kDockerManifestList || (media.empty() && inner_media.empty() && j.contains("manifests"));
  if (!is_index) {
    manifest_digest = digest_seen;
    return text;
  }
  auto list = j.find("manifests");
  if (list == j.end() || !list->is_array()) return err("index {}: no manifests", digest_seen);
  for (const auto& m : *list) {
    if (!m.is_object()) continue;
    auto platform = m.find("platform");
    if (platform != m.end() && platform->is_object() &&
        (str_at(*platform, "os") != "linux" || str_at(*platform, "architecture") != "amd64"))
      continue;
    return oci_manifest(m, depth + 1, manifest_digest);
  }
  return err("index {}: no linux/amd64 image", digest_seen);
}

Result<ImageRecord> Loader::oci_image(const json& desc) {
  ImageRecord r;
  VIC_ASSIGN(std::string text, oci_manifest(desc, 0, r.manifest_digest));
  VIC_ASSIGN(json m, parse_json(text, "manifest " + r.manifest_digest));
  std::string what = "manifest " + short_digest(r.manifest_digest);
  auto config_desc = m.find("config");
  if (config_desc == m.end() || !config_desc->is_object()) return err("{}: no config", what);
  VIC_ASSIGN(std::string config, read_blob_json(paths_, in_.dir.get(), *config_desc, "config", &created_, &r.config_digest));
  std::vector<std::string> diff_ids;
  auto parsed = parse_image_config(config, diff_ids);
  if (!parsed) return with_context(parsed.error(), "config " + short_digest(r.config_digest));
  r.image = std::move(*parsed);
  r.image.id = digest_hex(r.config_digest);
  auto layers = m.find("layers");
  if (layers == m.end() || !layers->is_array()) return err("{}: no layers", what);
  if (layers->size() != diff_ids.size())
    return err("{}: {} layers, but its config lists {} diff_ids", what, layers->size(), diff_ids.size());
  for (size_t l = 0; l < layers->size(); ++l) {
    const json& ld = (*layers)[l];
    std::string digest = str_at(ld, "digest");
    if (!valid_digest(digest)) return err("{}: layer {}: malformed digest '{}'", what, l, digest);
    auto size_it = ld.find("size");
    if (size_it == ld.end() || !size_it->is_number_unsigned()) return err("{}: layer {}: no size", what, digest);
    std::string media = str_at(ld, "mediaType");
    if (media.find("nondistributable") != std::string::npos || ld.contains("urls"))
      return err("layer {}: foreign layer (fetched from elsewhere), not in the layout", short_digest(digest));
    VIC_ASSIGN(UniqueFd fd, open_member(in_.dir.get(), "blobs/sha256/" + digest_hex(digest)));
    auto blob = ingest_blob(paths_, fd.get(), digest, static_cast<int64_t>(size_it->get<uint64_t>()),
                            limits_.max_unpacked_bytes, &created_);
    if (!blob) return err("layer {}: {}", digest, blob.error().message);
    Layer layer{digest, diff_ids[l], media.empty() ? kOciLayer : media, blob->size};
    if (auto c = check_diff_id(paths_, layer, limits_); !c) return err("layer {}: {}", digest, c.error().message);
    r.image.size += layer.size;
    r.image.layers.push_back(std::move(layer));
  }
  return r;
}

Result<std::vector<Image>> Loader::oci_layout() {
  VIC_ASSIGN(json layout, read_member_json(in_.dir.get(), "oci-layout"));
  if (str_at(layout, "imageLayoutVersion").empty()) return err("oci-layout: no imageLayoutVersion");
  VIC_ASSIGN(json index, read_member_json(in_.dir.get(), "index.json"));
  auto list = index.is_object() ? index.find("manifests") : index.end();
  if (!index.is_object() || list == index.end() || !list->is_array() || list->empty())
    return err("index.json: no manifests");
  if (list->size() > kMaxListEntries) return err("index.json: more than {} manifests", kMaxListEntries);
  for (const auto& desc : *list) {
    if (!desc.is_object()) return err("index.json: a manifest descriptor is not an object");
    VIC_ASSIGN(ImageRecord r, oci_image(desc));
    std::vector<std::string> tags;
    std::string full, ref;
    if (auto ann = desc.find("annotations"); ann != desc.end() && ann->is_object()) {
      full = str_at(*ann, "io.containerd.image.name");
      ref = str_at(*ann, "org.opencontainers.image.ref.name");
    }
    // skopeo and umoci put only the tag in ref.name; then the repository
    // name comes from the input's file name.
    std::string name = !full.empty() ? full
                       : ref.empty() ? std::string()
                       : (ref.find(':') != std::string::npos || ref.find('/') != std::string::npos)
                           ? ref
                           : in_.derived_name + ":" + ref;
    if (!name.empty()) {
      auto tag = normalize_tag(name);
      if (!tag) return with_context(tag.error(), "index.json");
      tags.push_back(*tag);
    }
    add(std::move(r), tags);
  }
  return commit();
}

bool has_member(int dir_fd, const char* name) { return faccessat(dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0; }

}  // namespace

Result<std::vector<Image>> Store::load(const std::string& path) {
  StorePaths paths{root_};
  std::string what = "image load " + (path == "-" ? std::string("(standard input)") : path);
  // Exclusive for the whole load: a concurrent remove must not drop blobs
  // this load is about to reference.
  auto lock = FileLock::acquire(paths.lock(), true);
  if (!lock) return with_context(lock.error(), what);
  auto input = open_load_input(paths, path, limits_);
  if (!input) return with_context(input.error(), what);
  Loader loader(paths, limits_, *input);
  Result<std::vector<Image>> images;
  if (has_member(input->dir.get(), "manifest.json"))
    images = loader.docker_archive();
  else if (has_member(input->dir.get(), "oci-layout"))
    images = loader.oci_layout();
  else
    return err("{}: neither a docker-archive (no manifest.json) nor an OCI image layout (no oci-layout)", what);
  if (!images) {
    loader.rollback();
    return with_context(images.error(), what);
  }
  return images;
}

}  // namespace vicvmm::image
