#include "tools/vicvmm/image_ref.h"

#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cctype>
#include <cstdlib>
#include <fstream>

#include "image/digest.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/options.h"
#include "vmm/unique_fd.h"

namespace vicvmm::cli {

Result<ResolvedImage> open_image(const std::string& ref) {
  VIC_ASSIGN(auto store, image::Store::open(image::Store::default_root()));
  VIC_ASSIGN(auto img, store.resolve(ref));
  VIC_ASSIGN(auto disk, store.erofs_disk(img));
  return ResolvedImage{ref, std::move(img), std::move(disk)};
}

Result<image::Image> image_by_id(const std::string& id) {
  VIC_ASSIGN(auto store, image::Store::open(image::Store::default_root()));
  return store.resolve(id);
}

namespace {
struct GuestFiles {
  std::string kernel, initrd;
};
// The default guest's files are content-named (kernel-<hash>/vmlinux,
// rootfs-<hash>.cpio): their real paths identify what the template boots.
Result<GuestFiles> default_guest_files() {
  char kernel[PATH_MAX], initrd[PATH_MAX];
  if (!realpath(default_kernel().c_str(), kernel))
    return sys_err("kernel {} (build the default guest with ./tools/demo)", default_kernel());
  if (!realpath(default_initrd().c_str(), initrd))
    return sys_err("initrd {} (build the default guest with ./tools/demo)", default_initrd());
  return GuestFiles{kernel, initrd};
}
}  // namespace

Result<std::string> base_template_name() {
  VIC_ASSIGN(GuestFiles files, default_guest_files());
  return "image-base-" + image::digest_hex(image::sha256_of(files.kernel + "\n" + files.initrd)).substr(0, 12);
}

Result<std::string> ensure_base_template() {
  VIC_ASSIGN(GuestFiles files, default_guest_files());
  VIC_ASSIGN(std::string name, base_template_name());
  VIC_ASSIGN(std::string dir, template_path(name));
  if (access((dir + "/state.bin").c_str(), F_OK) == 0) return name;
  fmt::print(stderr, "vicvmm: creating the base template '{}' for images once (a cold boot)\n", name);
  TemplateCreateOptions tc;
  tc.name = name;
  tc.kernel = files.kernel;
  tc.initrd = files.initrd;
  tc.image_slot = true;
  tc.net = true;  // so clones can publish ports
  tc.report_to_stderr = true;
  if (cmd_template_create(tc) != 0) return err("creating the base template '{}' failed", name);
  return name;
}

Result<> write_template_image(const std::string& template_dir, const std::string& image_id) {
  std::string path = template_dir + "/" + kTemplateImageFile;
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return sys_err("template {}: writing {}", template_dir, tmp);
  std::string line = image_id + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd.get()) != 0)
    return sys_err("template {}: writing {}", template_dir, tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_err("template {}: renaming {}", template_dir, tmp);
  return {};
}

Result<std::string> read_template_image(const std::string& template_dir) {
  std::string path = template_dir + "/" + kTemplateImageFile;
  if (access(path.c_str(), F_OK) != 0) return std::string();
  std::ifstream in(path);
  std::string id;
  if (!std::getline(in, id)) return err("template {}: {} is empty", template_dir, path);
  if (id.size() != 64 || !std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
    return err("template {}: {} does not hold an image id", template_dir, path);
  return id;
}

}  // namespace vicvmm::cli
