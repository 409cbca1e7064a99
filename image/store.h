// The image store: container images kept content-addressed on the host.
//
// Layout under the store root (${XDG_STATE_HOME:-~/.local/state}/vicvmm/images):
//   blobs/sha256/<hex>      every blob (layers as shipped, configs, manifests), verified
//   images/<id>.json        one record per image (id = hex of the config digest)
//   tags.json               "name:tag" -> image id
//   erofs/<id>.erofs        the flattened root filesystem as an uncompressed EROFS image
//   tmp/                    staging; anything here is garbage after a crash
// Writes are atomic (temp file + rename) under an flock on the store, so a
// crash or a refused input never leaves a half-written blob, record or disk.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vmm/result.h"

namespace vicvmm::image {

// What the image's config says about running it (OCI "config" object).
struct RunConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;     // "KEY=value"
  std::string working_dir;          // "" = "/"
  std::string user;                 // "", "uid", "uid:gid", "name", "name:group"
  std::vector<std::string> exposed_ports;  // "80/tcp"
};

struct Layer {
  std::string digest;     // "sha256:<hex>" of the blob as stored
  std::string diff_id;    // "sha256:<hex>" of the uncompressed tar (from the config)
  std::string media_type;
  uint64_t size = 0;      // bytes of the stored blob
};

struct Image {
  std::string id;                 // hex sha256 of the config blob
  std::vector<std::string> tags;  // "name:tag"
  std::string created;            // from the config, RFC 3339, may be empty
  std::string architecture, os;
  RunConfig config;
  std::vector<Layer> layers;      // bottom first
  uint64_t size = 0;              // sum of layer blob sizes
  uint64_t erofs_size = 0;        // 0 until the EROFS disk exists
};

struct Limits {
  // Refuse an image whose layers unpack to more than this (a decompression
  // bomb); also caps the bytes read from a single archive input.
  uint64_t max_unpacked_bytes = 16ull << 30;
  uint64_t max_entries = 2'000'000;
};

class Store {
 public:
  // Opens (creating if needed) the store at `root`.
  static Result<Store> open(std::string root, Limits limits = {});
  // ${XDG_STATE_HOME:-$HOME/.local/state}/vicvmm/images
  static std::string default_root();

  // `vicvmm image load`: a docker-archive (docker/podman save) or an OCI
  // image layout (directory, or a tar of one); "-" reads standard input.
  // Returns every image the input held, tagged as the input names them.
  Result<std::vector<Image>> load(const std::string& path);
  // `vicvmm image import`: a plain root filesystem (a tar, possibly
  // compressed, or a directory) as a one-layer image tagged `name`
  // ("name" means "name:latest").
  Result<Image> import_rootfs(const std::string& path, const std::string& name);

  Result<std::vector<Image>> list() const;
  // A tag ("name" = "name:latest"), a full id, "sha256:<id>", or a unique id
  // prefix of at least 4 hex digits. Errors name the reference.
  Result<Image> resolve(const std::string& ref) const;
  Result<void> tag(const std::string& ref, const std::string& name);
  // Removes a tag; when `ref` is an id or the image's last tag, the image
  // (record, EROFS disk, blobs no other image uses) unless `in_use` names a
  // user (a template, a container): then it is refused naming that user.
  Result<void> remove(const std::string& ref,
                      const std::function<std::optional<std::string>(const Image&)>& in_use);

  // The image's root filesystem as an EROFS disk image, built on first use
  // (layers applied in order onto an empty tree, then mkfs.erofs, no
  // compression) and cached by image id. Safe to call concurrently.
  Result<std::string> erofs_disk(const Image& image);
  // The same disk's path if it is built already; never builds (for a
  // caller that must not block).
  std::optional<std::string> erofs_disk_if_built(const Image& image) const;

  const std::string& root() const { return root_; }

 private:
  Store(std::string root, Limits limits) : root_(std::move(root)), limits_(limits) {}
  std::string root_;
  Limits limits_;
};

}  // namespace vicvmm::image
