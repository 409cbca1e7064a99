// The image store's bookkeeping: opening, listing, resolving, tagging and
// removing images. Loading is in load.cc and import.cc, disks in erofs.cc.
#include "image/store.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "image/fs_util.h"
#include "image/records.h"

namespace vicvmm::image {

namespace {

bool all_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Every image id with a record, from images/*.json.
Result<std::vector<std::string>> record_ids(const StorePaths& paths) {
  std::vector<std::string> ids;
  std::string dir = paths.root + "/images";
  DIR* d = opendir(dir.c_str());
  if (!d) return sys_err("{}", dir);
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() == 64 + 5 && n.ends_with(".json") && all_hex(n.substr(0, 64))) ids.push_back(n.substr(0, 64));
  }
  closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The record with its tags and disk size filled in.
Result<Image> load_image(const StorePaths& paths, const std::string& id, const TagTable& tags) {
  VIC_ASSIGN(ImageRecord r, read_record(paths, id));
  for (const auto& [name, tagged] : tags)
    if (tagged == id) r.image.tags.push_back(name);
  struct stat st {};
  if (stat(paths.erofs(id).c_str(), &st) == 0) r.image.erofs_size = static_cast<uint64_t>(st.st_size);
  return r.image;
}

Result<std::string> resolve_id(const StorePaths& paths, const std::string& ref, const TagTable& tags) {
  if (auto tag = normalize_tag(ref); tag) {
    if (auto it = tags.find(*tag); it != tags.end()) return it->second;
  }
  std::string hex = ref.starts_with("sha256:") ? ref.substr(7) : ref;
  if (hex.size() >= 4 && hex.size() <= 64 && all_hex(hex)) {
    VIC_ASSIGN(auto ids, record_ids(paths));
    std::vector<std::string> matches;
    for (const auto& id : ids)
      if (id.starts_with(hex)) matches.push_back(id);
    if (matches.size() == 1) return matches[0];
    if (matches.size() > 1) return err("image {}: ambiguous, matches {} images", ref, matches.size());
  }
  return err("image {}: no such image", ref);
}

}  // namespace

std::string Store::default_root() {
  const char* state = std::getenv("XDG_STATE_HOME");
  std::string base;
  if (state && *state == '/') {
    base = state;
  } else {
    const char* home = std::getenv("HOME");
    base = std::string(home && *home ? home : "/root") + "/.local/state";
  }
  return base + "/vicvmm/images";
}

Result<Store> Store::open(std::string root, Limits limits) {
  if (root.empty()) return err("image store: empty root path");
  for (const char* sub : {"", "/blobs/sha256", "/images", "/erofs", "/tmp"}) {
    std::error_code ec;
    std::filesystem::create_directories(root + sub, ec);
    if (ec) return err("image store {}: creating {}: {}", root, root + sub, ec.message());
  }
  // Made now so that a refused first load leaves the store as it found it.
  if (auto lock = FileLock::acquire(root + "/lock", false); !lock) return with_context(lock.error(), "image store");
  return Store(std::move(root), limits);
}

Result<std::vector<Image>> Store::list() const {
  StorePaths paths{root_};
  VIC_ASSIGN(TagTable tags, read_tags(paths));
  VIC_ASSIGN(auto ids, record_ids(paths));
  std::vector<Image> out;
  for (const auto& id : ids) {
    auto img = load_image(paths, id, tags);
    if (!img) {
      if (img.error().sys_errno == ENOENT) continue;  // removed meanwhile
      return tl::unexpected(img.error());
    }
    out.push_back(std::move(*img));
  }
  return out;
}

Result<Image> Store::resolve(const std::string& ref) const {
  StorePaths paths{root_};
  VIC_ASSIGN(TagTable tags, read_tags(paths));
  VIC_ASSIGN(std::string id, resolve_id(paths, ref, tags));
  return load_image(paths, id, tags);
}

Result<void> Store::tag(const std::string& ref, const std::string& name) {
  StorePaths paths{root_};
  VIC_ASSIGN(std::string tag, normalize_tag(name));
  VIC_ASSIGN(FileLock lock, FileLock::acquire(paths.lock(), true));
  VIC_ASSIGN(TagTable tags, read_tags(paths));
  VIC_ASSIGN(std::string id, resolve_id(paths, ref, tags));
  tags[tag] = id;
  return write_tags(paths, tags);
}

Result<void> Store::remove(const std::string& ref,
                           const std::function<std::optional<std::string>(const Image&)>& in_use) {
  StorePaths paths{root_};
  VIC_ASSIGN(FileLock lock, FileLock::acquire(paths.lock(), true));
  VIC_ASSIGN(TagTable tags, read_tags(paths));
  VIC_ASSIGN(std::string id, resolve_id(paths, ref, tags));
  VIC_ASSIGN(Image img, load_image(paths, id, tags));
  auto tag = normalize_tag(ref);
  bool by_tag = tag && tags.count(*tag) && tags[*tag] == id;
  if (by_tag && img.tags.size() > 1) {  // other tags keep the image
    tags.erase(*tag);
    return write_tags(paths, tags);
  }
  if (in_use) {
    if (auto user = in_use(img)) return err("image {} is in use by {}", ref, *user);
  }
  for (const auto& t : img.tags) tags.erase(t);
  VIC_TRY(write_tags(paths, tags));

  VIC_ASSIGN(ImageRecord mine, read_record(paths, id));
  if (unlink(paths.record(id).c_str()) != 0) return sys_err("removing {}", paths.record(id));
  unlink(paths.erofs(id).c_str());
  unlink(paths.erofs_lock(id).c_str());
  drop_unused_blobs(paths, blobs_of(mine));
  return {};
}

}  // namespace vicvmm::image
