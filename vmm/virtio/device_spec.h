// What a VM's virtio device is, as a value: enough to open its backend
// again. A template records one per slot so that every clone opens its own
// backend (its own disk fd and io_uring) behind the restored transport.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vmm/net/slirp_backend.h"
#include "vmm/result.h"
#include "vmm/virtio/device.h"

namespace vicvmm::virtio {

// The file a disk was opened on, so a clone can tell it is still the file
// the template's guest cached (a changed disk under a warm page cache
// would read as corruption in the guest).
struct FileIdentity {
  uint64_t dev = 0, ino = 0, size = 0, mtime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

struct DeviceSpec {
  uint32_t device_id = 0;  // kDeviceRng, kDeviceBlock, kDeviceConsole or kDeviceNet
  std::string path;        // block: the image
  bool read_only = false;  // block
  FileIdentity identity;   // block: filled in by open_device()
  std::vector<net::PortForward> forwards;  // net: this VM's published ports (not part of a snapshot)
};

const char* device_kind_name(uint32_t device_id);

// Opens the backend. When `expect` is set (a clone reopening a template's
// disk), the file must still be the one recorded there.
Result<std::shared_ptr<Device>> open_device(DeviceSpec& spec, const FileIdentity* expect = nullptr);

}  // namespace vicvmm::virtio
