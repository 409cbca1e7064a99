#include "vmm/virtio/device_spec.h"

#include <sys/stat.h>

#include "vmm/virtio/block.h"
#include "vmm/virtio/console.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/rng.h"

namespace vicvmm::virtio {

const char* device_kind_name(uint32_t device_id) {
  switch (device_id) {
    case kDeviceBlock: return "blk";
    case kDeviceRng: return "rng";
    case kDeviceConsole: return "console";
    case kDeviceNet: return "net";
    default: return "unknown";
  }
}

Result<std::shared_ptr<Device>> open_device(DeviceSpec& spec, const FileIdentity* expect) {
  switch (spec.device_id) {
    case kDeviceRng: return std::shared_ptr<Device>(std::make_shared<Rng>());
    case kDeviceNet: {
      VIC_ASSIGN(auto backend, net::SlirpBackend::create(spec.forwards));
      return std::shared_ptr<Device>(std::make_shared<Net>(std::move(backend)));
    }
    case kDeviceConsole: {
      VIC_ASSIGN(auto c, Console::create());
      return std::shared_ptr<Device>(std::move(c));
    }
    case kDeviceBlock: {
      VIC_ASSIGN(auto blk, Block::open({spec.path, spec.read_only, {}}));
      if (spec.path.empty()) return std::shared_ptr<Device>(std::move(blk));  // an empty slot: nothing to check
      struct stat st;
      if (fstat(blk->fd(), &st) != 0) return sys_err("disk {}: stat", spec.path);
      spec.identity = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), blk->capacity_bytes(),
                       static_cast<uint64_t>(st.st_mtim.tv_sec) * 1'000'000'000ull +
                           static_cast<uint64_t>(st.st_mtim.tv_nsec)};
      if (expect && !(spec.identity == *expect))
        return err("disk {}: changed since the template was captured (another file, size or mtime); "
                   "recreate the template",
                   spec.path);
      return std::shared_ptr<Device>(std::move(blk));
    }
    default: return err("virtio device type {}: not one vicvmm can open", spec.device_id);
  }
}

}  // namespace vicvmm::virtio
