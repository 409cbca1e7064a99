// What a container create needs to know about its image, kept between
// creates: the image a reference names (tags.json and the image's record,
// read and parsed: ~80 µs) and the template made from it, if any (a
// directory scan and a file per template: ~60 µs). The image store and the
// templates are changed by other processes too (`vicvmm image`,
// `vicvmm template`), so each answer is kept together with the stamps of
// the files and directories it was read from, and used again only while a
// stat of each says nothing changed.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "image/store.h"
#include "vmm/result.h"

namespace vicvmm::serve {

// A file's identity and last change, as stat reports them. A file replaced
// by a rename has another inode; one changed in place another mtime, ctime
// or size.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;

  // nullopt: the path does not exist (which is a stamp too: "still absent").
  static std::optional<FileStamp> of(const std::string& path);
  // Changed within `window_ns` of `now_ns`: the kernel stamps files from a
  // coarse clock (a few ms), so a second change within the same tick could
  // leave every field but the contents alike. Such a stamp is not trusted.
  bool recent(int64_t now_ns, int64_t window_ns) const;
  bool operator==(const FileStamp&) const = default;
};

class ImageLookup {
 public:
  // Files changed within the last second are not trusted to show a next
  // change in their stamps (FileStamp::recent).
  static constexpr int64_t kRacyWindowNs = 1'000'000'000;

  // `templates_dir` may be empty (no per-image templates).
  ImageLookup(image::Store& store, std::string templates_dir, int64_t racy_window_ns = kRacyWindowNs);

  // Store::resolve(ref), from the last answer while tags.json, the images/
  // directory (an id prefix may match a new image) and the image's record
  // are unchanged. The image's erofs_size is as it was when first read.
  Result<std::shared_ptr<const image::Image>> resolve(const std::string& ref);

  // The directory of a template made from image `image_id` whose state is
  // there (state.bin), or "" for none; several: the last by name.
  std::string template_of(const std::string& image_id);

  // Answers given from what was kept (for tests and serve's log).
  uint64_t hits() const;

 private:
  using Stamps = std::vector<std::pair<std::string, std::optional<FileStamp>>>;
  static bool still(const Stamps& stamps);
  bool trustworthy(const Stamps& stamps) const;

  struct Resolved {
    Stamps stamps;
    std::shared_ptr<const image::Image> image;
  };
  struct TemplateIndex {
    Stamps stamps;  // the templates directory and each template's
    std::map<std::string, std::string> dir_of_image;  // image id -> template directory
  };

  image::Store& store_;
  std::string templates_dir_;
  int64_t racy_window_ns_;
  mutable std::mutex mu_;
  uint64_t hits_ = 0;
  std::map<std::string, Resolved> resolved_;  // by reference as given
  std::optional<TemplateIndex> templates_;
};

}  // namespace vicvmm::serve
