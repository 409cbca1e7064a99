// Who uses an image: the templates made from it (TEMPLATES_DIR/NAME/image
// holds the image id). Shared by `vicvmm image` and `vicvmm serve`, so both
// refuse to remove an image a template still boots from.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace vicvmm::image {

// Template name -> the image id it was created from; a missing directory is
// no templates.
std::map<std::string, std::string> template_images(const std::string& templates_dir);

// The names of the templates in `templates` made from image `id`.
std::vector<std::string> templates_using(const std::string& id, const std::map<std::string, std::string>& templates);

}  // namespace vicvmm::image
