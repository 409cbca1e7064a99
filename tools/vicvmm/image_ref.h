// Containers from images in the CLI: resolving IMG to its store record and
// its EROFS disk, and remembering which image a template was booted from.
#pragma once

#include <string>

#include "image/container_spec.h"
#include "image/store.h"
#include "vmm/result.h"

namespace vicvmm::cli {

struct ResolvedImage {
  std::string ref;      // as the user wrote it
  image::Image image;
  std::string disk;     // the EROFS disk, built on first use
};

// Opens the image store, resolves IMG and makes sure its disk exists.
Result<ResolvedImage> open_image(const std::string& ref);

// Looks the image up by id again (a template records the id, not the tag).
Result<image::Image> image_by_id(const std::string& id);

// The base template `fork --image` clones: the default guest booted once
// with an empty disk slot (plus console, rng and network), named after the
// kernel and initramfs files it boots; created on first use (a cold boot).
// Returns its name.
Result<std::string> ensure_base_template();
// Its name, without making it.
Result<std::string> base_template_name();

// A template of an image keeps the image's id in DIR/image (one line).
inline constexpr const char* kTemplateImageFile = "image";
Result<> write_template_image(const std::string& template_dir, const std::string& image_id);
// "" when the template is not of an image.
Result<std::string> read_template_image(const std::string& template_dir);

}  // namespace vicvmm::cli
