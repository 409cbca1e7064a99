// `vicvmm template create|ls|rm`: templates are snapshot directories kept
// under the state directory, created by booting the guest once.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "clone/snapshot.h"
#include "clone/template.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/image_ref.h"
#include "tools/vicvmm/options.h"
#include "vmm/machine.h"
#include "vmm/mapped_file.h"
#include "vmm/virtio/block.h"

namespace vicvmm::cli {

namespace {
int fail(const std::string& msg) {
  fmt::print(stderr, "vicvmm: error: {}\n", msg);
  return kExitVmmError;
}
}  // namespace

int cmd_template_create(const TemplateCreateOptions& o) {
  uint64_t t0 = monotonic_ns();
  auto path = template_path(o.name);
  if (!path) return fail(path.error().message);
  if (!o.force && access(path->c_str(), F_OK) == 0)
    return fail(fmt::format("template '{}' already exists (use --force to replace it)", o.name));
  auto mem = parse_guest_memory(o.mem);
  if (!mem) return fail(mem.error().message);
  std::vector<virtio::DeviceSpec> devices;
  devices.push_back({virtio::kDeviceConsole, {}, false, {}});  // the command's stdio
  if (!o.no_rng) devices.push_back({virtio::kDeviceRng, {}, false, {}});
  if (o.net) devices.push_back({virtio::kDeviceNet, {}, false, {}});
  // An image's disk comes first among the disks: the agent mounts /dev/vda.
  std::vector<std::string> disk_options = o.disks;
  std::optional<ResolvedImage> img;
  if (o.image_slot && !o.image.empty()) return fail("--image-slot and --image: one or the other");
  if (o.image_slot) devices.push_back({virtio::kDeviceBlock, "", true, {}});  // /dev/vda, empty until a clone fills it
  if (!o.image.empty()) {
    auto r = open_image(o.image);
    if (!r) return fail(r.error().message);
    img = std::move(*r);
    disk_options.insert(disk_options.begin(), img->disk + ",ro");
  }
  for (const auto& text : disk_options) {
    auto d = virtio::parse_disk_option(text);
    if (!d) return fail(d.error().message);
    if (!d->read_only)
      return fail(fmt::format("--disk {}: a template's disks must be read-only (,ro): every clone shares them", text));
    std::error_code ec;  // clones run from anywhere: keep the absolute path
    auto abs = std::filesystem::absolute(d->path, ec);
    devices.push_back({virtio::kDeviceBlock, ec ? d->path : abs.string(), true, {}});
  }
  auto kernel = MappedFile::open(o.kernel.empty() ? default_kernel() : o.kernel, "kernel");
  if (!kernel) return fail(kernel.error().message);
  auto initrd = MappedFile::open(o.initrd.empty() ? default_initrd() : o.initrd, "initrd");
  if (!initrd) return fail(initrd.error().message);
  auto kvm = Kvm::open();
  if (!kvm) return fail(kvm.error().message);

  std::vector<std::string> inputs = {o.kernel.empty() ? default_kernel() : o.kernel,
                                     o.initrd.empty() ? default_initrd() : o.initrd};
  for (const auto& d : devices) inputs.push_back(d.path);
  auto console = open_console(o.console, o.console_limit, inputs);
  if (!console) return fail(console.error().message);

  TemplateSpec spec;
  spec.kernel = kernel->bytes();
  spec.initrd = initrd->bytes();
  spec.mem_size = *mem;
  spec.extra_cmdline = o.cmdline;
  spec.console_fd = console->fd.get();
  spec.console_limit = console->limit;
  spec.devices = std::move(devices);
  if (img) spec.agent_flags = VIC_MB_IMAGE_ROOT;
  if (o.timeout_s) spec.timeout = std::chrono::seconds(o.timeout_s);
  fmt::print(stderr, "vicvmm: booting template '{}'...\n", o.name);
  auto tmpl = Template::boot(*kvm, spec);
  if (!tmpl) return fail(tmpl.error().message);
  uint64_t t_booted = monotonic_ns();

  std::error_code ec;
  std::filesystem::create_directories(templates_dir(), ec);
  if (ec) return fail(fmt::format("creating {}: {}", templates_dir(), ec.message()));
  // The image record is ours, not the snapshot's: out of save's way.
  if (o.force) unlink((*path + "/" + kTemplateImageFile).c_str());
  if (auto r = (*tmpl)->save(*path, o.force); !r) return fail(r.error().message);
  if (img) {
    if (auto r = write_template_image(*path, img->image.id); !r) return fail(r.error().message);
  }
  uint64_t t_saved = monotonic_ns();
  fmt::print(o.report_to_stderr ? stderr : stdout, "template '{}' ready: booted in {:.1f} s, saved in {:.0f} ms to {}\n",
             o.name, (t_booted - t0) / 1e9, (t_saved - t_booted) / 1e6, *path);
  return 0;
}

int cmd_template_ls() {
  std::string dir = templates_dir();
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return 0;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_directory() && e.path().filename().string()[0] != '.') names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  fmt::print("{:<24} {:>10} {:>12}\n", "NAME", "MEMORY", "ON DISK");
  for (const auto& n : names) {
    struct stat st {};
    std::string mem_file = dir + "/" + n + "/memory.bin";
    if (stat(mem_file.c_str(), &st) != 0) {
      fmt::print("{:<24} {:>10} {:>12}\n", n, "?", "(incomplete)");
      continue;
    }
    fmt::print("{:<24} {:>9}M {:>11}M\n", n, st.st_size >> 20, (st.st_blocks * 512) >> 20);
  }
  return 0;
}

int cmd_template_rm(const std::string& name) {
  auto path = template_path(name);
  if (!path) return fail(path.error().message);
  std::error_code ec;
  if (!std::filesystem::exists(*path, ec)) return fail(fmt::format("template '{}' does not exist", name));
  std::filesystem::remove_all(*path, ec);
  if (ec) return fail(fmt::format("removing {}: {}", *path, ec.message()));
  return 0;
}

int cmd_snapshot(const std::string& name, const std::string& dir) {
  auto path = template_path(name);
  if (!path) return fail(path.error().message);
  auto tmpl = Template::load(*path, detect_host_kind());
  if (!tmpl) return fail(tmpl.error().message);
  if (auto r = (*tmpl)->save(dir); !r) return fail(r.error().message);
  fmt::print("snapshot of '{}' written to {}\n", name, dir);
  return 0;
}

}  // namespace vicvmm::cli
