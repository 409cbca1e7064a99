// A Template is a booted guest, paused where its agent said "template
// ready", captured once: TemplateState plus guest memory in a file that
// nothing can change any more (a sealed memfd, or a snapshot's memory file).
// Clones map that memory MAP_PRIVATE, so they share every page they do not write.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>

#include "clone/snapshot.h"
#include "clone/template_state.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

struct TemplateSpec {
  std::span<const uint8_t> kernel;
  std::span<const uint8_t> initrd;
  uint64_t mem_size = 128ull << 20;
  std::string extra_cmdline;
  int console_fd = -1;  // the template's boot console; -1 discards it
  uint64_t console_limit = 0;  // bytes written to console_fd before the rest is dropped; 0: no cap
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // In slot order. Disks must be read-only: every clone shares them.
  std::vector<virtio::DeviceSpec> devices;
  // Extra VIC_MB_* flags for the agent's boot, e.g. VIC_MB_IMAGE_ROOT (the
  // first disk is a container image: clones start in its root filesystem).
  uint32_t agent_flags = 0;
};

class Template {
 public:
  // Boots the guest with the agent in template mode and captures it.
  static Result<std::shared_ptr<const Template>> boot(const Kvm& kvm, const TemplateSpec& spec);
  // Captures any machine stopped at its agent's VIC_EV_TEMPLATE doorbell
  // (Linux or a tiny test guest). The machine must use Backing::SharedMemfd
  // and is consumed: its memory becomes the template's, sealed. `devices`
  // describes the machine's virtio slots, in order (their in-flight
  // requests are finished, then their state recorded).
  static Result<std::shared_ptr<const Template>> capture(const Kvm& kvm, std::unique_ptr<Machine> machine,
                                                         std::vector<virtio::DeviceSpec> devices = {});
  // From a snapshot directory written by save() (clone/snapshot.h).
  // `how`: map memory.bin itself (vicvmm's own templates) or a sealed copy
  // of it (a snapshot from elsewhere: see SnapshotMemory).
  static Result<std::shared_ptr<const Template>> load(const std::string& dir, HostKind host,
                                                      bool verify_memory = true,
                                                      SnapshotMemory how = SnapshotMemory::MapFile);

  // Writes the template as a snapshot directory (atomically).
  Result<> save(const std::string& dir, bool replace = false) const;

  const TemplateState& state() const { return state_; }
  uint64_t mem_size() const { return state_.mem_size; }
  // Read-only source of guest memory for MAP_PRIVATE clone mappings.
  int memory_fd() const { return memory_.get(); }

 private:
  TemplateState state_;
  UniqueFd memory_;
};

}  // namespace vicvmm
