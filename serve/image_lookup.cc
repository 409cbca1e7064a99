#include "serve/image_lookup.h"

#include <dirent.h>
#include <unistd.h>

#include "image/records.h"
#include "image/users.h"
#include "vmm/machine.h"  // realtime_ns

namespace vicvmm::serve {

namespace {

// Distinct references kept; more (a client trying prefixes) start afresh.
constexpr size_t kMaxResolved = 256;

int64_t ns(const timespec& t) { return int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

}  // namespace

std::optional<FileStamp> FileStamp::of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{st.st_dev, st.st_ino, st.st_size, ns(st.st_mtim), ns(st.st_ctim)};
}

bool FileStamp::recent(int64_t now_ns, int64_t window_ns) const {
  return now_ns - mtime_ns < window_ns || now_ns - ctime_ns < window_ns;
}

ImageLookup::ImageLookup(image::Store& store, std::string templates_dir, int64_t racy_window_ns)
    : store_(store), templates_dir_(std::move(templates_dir)), racy_window_ns_(racy_window_ns) {}

uint64_t ImageLookup::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}

bool ImageLookup::still(const Stamps& stamps) {
  for (const auto& [path, stamp] : stamps)
    if (FileStamp::of(path) != stamp) return false;
  return true;
}

bool ImageLookup::trustworthy(const Stamps& stamps) const {
  const int64_t now = static_cast<int64_t>(realtime_ns());
  for (const auto& [path, stamp] : stamps)
    if (stamp && stamp->recent(now, racy_window_ns_)) return false;
  return true;
}

Result<std::shared_ptr<const image::Image>> ImageLookup::resolve(const std::string& ref) {
  const image::StorePaths paths{store_.root()};
  {
    std::lock_guard lock(mu_);
    if (auto it = resolved_.find(ref); it != resolved_.end()) {
      if (still(it->second.stamps)) {
        ++hits_;
        return it->second.image;
      }
      resolved_.erase(it);
    }
  }
  // Stamps first, then the reads: a change in between makes the stamps
  // stale, never the answer newer than its stamps.
  Stamps stamps{{paths.tags(), FileStamp::of(paths.tags())}, {paths.root + "/images", FileStamp::of(paths.root + "/images")}};
  VIC_ASSIGN(image::Image img, store_.resolve(ref));
  const std::string record = paths.record(img.id);
  stamps.emplace_back(record, FileStamp::of(record));
  auto shared = std::make_shared<const image::Image>(std::move(img));
  if (trustworthy(stamps) && still(stamps)) {
    std::lock_guard lock(mu_);
    if (resolved_.size() >= kMaxResolved) resolved_.clear();
    resolved_[ref] = Resolved{std::move(stamps), shared};
  }
  return shared;
}

std::string ImageLookup::template_of(const std::string& image_id) {
  if (templates_dir_.empty()) return "";
  std::lock_guard lock(mu_);
  if (!templates_ || !still(templates_->stamps)) {
    TemplateIndex index;
    index.stamps.emplace_back(templates_dir_, FileStamp::of(templates_dir_));
    if (DIR* d = opendir(templates_dir_.c_str())) {
      while (struct dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name.empty() || name[0] == '.') continue;
        std::string dir = templates_dir_ + "/" + name;
        index.stamps.emplace_back(dir, FileStamp::of(dir));  // a new image or state.bin changes it
      }
      closedir(d);
    }
    // Name order, as `vicvmm template ls` lists them: the last one wins.
    for (const auto& [name, id] : image::template_images(templates_dir_)) {
      std::string dir = templates_dir_ + "/" + name;
      if (access((dir + "/state.bin").c_str(), F_OK) == 0) index.dir_of_image[id] = dir;
    }
    if (!trustworthy(index.stamps) || !still(index.stamps)) {
      templates_.reset();  // read again next time
      auto it = index.dir_of_image.find(image_id);
      return it == index.dir_of_image.end() ? "" : it->second;
    }
    templates_ = std::move(index);
  } else {
    ++hits_;
  }
  auto it = templates_->dir_of_image.find(image_id);
  return it == templates_->dir_of_image.end() ? "" : it->second;
}

}  // namespace vicvmm::serve
