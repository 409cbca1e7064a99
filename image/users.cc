#include "image/users.h"

#include <dirent.h>

#include <fstream>

namespace vicvmm::image {

std::map<std::string, std::string> template_images(const std::string& templates_dir) {
  std::map<std::string, std::string> out;
  DIR* d = opendir(templates_dir.c_str());
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    std::ifstream f(templates_dir + "/" + name + "/image");
    std::string id;
    if (f && std::getline(f, id)) {
      while (!id.empty() && (id.back() == '\r' || id.back() == ' ')) id.pop_back();
      if (!id.empty()) out[name] = id;
    }
  }
  closedir(d);
  return out;
}

std::vector<std::string> templates_using(const std::string& id, const std::map<std::string, std::string>& templates) {
  std::vector<std::string> users;
  for (const auto& [name, image_id] : templates)
    if (image_id == id) users.push_back(name);
  return users;
}

}  // namespace vicvmm::image
