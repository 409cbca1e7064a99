// A Clone is one container VM forked from a Template: its own KVM VM over a
// MAP_PRIVATE mapping of the template's memory, the template's captured
// state restored, and its own personality in the mailbox page.
//
// Life cycle: create() builds the shell (VM, memslots, irqchip, vCPU,
// CPUID: the expensive part, done ahead of time by ClonePool); start()
// restores state and writes the personality; run() runs it to its stop;
// reset() brings it back to the template state in place, ready to start again.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "clone/template.h"
#include "vmm/agent/exec_channel.h"
#include "vmm/agent/mailbox.h"
#include "vmm/machine.h"
#include "vmm/virtio/block.h"
#include "vmm/virtio/console.h"
#include "vmm/virtio/net.h"

namespace vicvmm {

struct CloneOptions {
  int console_fd = -1;  // -1: output only through on_console_line
  std::function<void(uint32_t clone_id, const std::string& line)> on_console_line;
  bool dirty_tracking = true;
  std::chrono::milliseconds timeout{0};
  // Restore the template state when the shell is built, so that start()
  // only writes the personality (what ClonePool's shells do).
  bool restore_ahead = true;
  // An in-kernel PIT in each clone. Off by default: a booted Linux guest
  // ticks on the LAPIC timer, and KVM starts a kernel thread per PIT
  // (~0.1 ms, up to ~3.5 ms at p90 here, and a kernel stack per clone).
  bool pit = false;
  // The command's stdout (port 1) and stderr (port 2) bytes, on the I/O
  // thread, when the template has a virtio-console. Unset: they arrive as
  // lines through on_console_line, like the kernel's.
  std::function<void(uint32_t clone_id, uint32_t port, std::span<const uint8_t> bytes)> on_output;
};

struct CloneTimes {  // CLOCK_MONOTONIC ns; 0 until it happens
  uint64_t requested = 0;    // start() was called
  uint64_t first_run = 0;    // just before the first KVM_RUN
  uint64_t personality = 0;  // the agent rang READY after reading the mailbox
  uint64_t stopped = 0;
};

class Clone {
 public:
  static Result<std::unique_ptr<Clone>> create(const Kvm& kvm, std::shared_ptr<const Template> tmpl,
                                               const CloneOptions& opts = {});
  ~Clone();

  // Restores the template state (unless the shell already did) and writes
  // the personality. `requested_ns`
  // lets a caller that waited for a pooled shell count from its request.
  Result<> start(const AgentRequest& personality, uint64_t requested_ns = 0);
  Result<StopInfo> run();
  // Publishes host ports to this clone's guest (its template has a
  // virtio-net); before start(). A reset removes them again.
  Result<> publish(const std::vector<net::PortForward>& forwards);
  // Puts a read-only disk image (a container image's EROFS disk) into the
  // template's empty disk slot at start(), announced to the guest with a
  // configuration-change interrupt; before start(). A reset empties the
  // slot again.
  Result<> attach_image(const std::string& disk_path);
  // Gives the clone a stdin (its template closed it): reopened at start(),
  // fed from `fd` (a pipe or socket) until EOF by a thread of the clone's.
  // Before start(); the agent is told through VIC_MB_STDIN.
  Result<> attach_stdin(int fd);
  // Back to the template state, discarding the pages this clone wrote; the
  // clone can then start() again.
  Result<> reset();

  // Pages written since start: the guest's writes and KVM's own (restoring
  // kvmclock makes KVM write its clock page) from the dirty log, plus the
  // mailbox the VMM wrote. Harvests the dirty log.
  Result<uint64_t> dirty_pages();
  // Bytes of host memory this clone owns privately (dirty pages x 4 KiB).
  Result<uint64_t> private_bytes() { return dirty_pages().map([](uint64_t n) { return n * 4096; }); }
  // Guest-physical page numbers written since start (sorted).
  Result<std::vector<uint64_t>> dirty_page_list();

  // A diff snapshot: this stopped clone's state plus only the pages it
  // wrote, on top of its template. `dir` gets state.bin and a sparse
  // memory.bin in the snapshot format (clone/snapshot.h) holding just those
  // pages, and pages.bin: "VICDIFF1", a hash of the base template (state and
  // memory), the page count, the guest page numbers (u64 LE each) and an
  // XXH3 of all that.
  Result<> save_diff(const std::string& dir);
  // A clone of `base` carrying a diff snapshot's pages and state, ready to
  // run() (it continues where the saved clone stopped; no start()).
  static Result<std::unique_ptr<Clone>> from_diff(const Kvm& kvm, std::shared_ptr<const Template> base,
                                                  const std::string& dir, const CloneOptions& opts = {});

  // More processes in the running clone (docker exec), when its template
  // has a virtio-console; null otherwise. Sessions end when the VM stops.
  // Shared: a session's threads may outlive the clone by a moment.
  std::shared_ptr<ExecChannel> exec() { return exec_; }

  CloneTimes times() const;
  Machine& machine() { return *machine_; }
  uint32_t id() const { return id_; }

 private:
  Result<> harvest_dirty_log();
  Result<> restore_template_state();
  Result<> restore_devices(const std::vector<DeviceRecord>& devices);

  void on_stdio(uint32_t port, std::span<const uint8_t> bytes);

  std::shared_ptr<const Template> tmpl_;
  CloneOptions opts_;
  std::array<std::string, 3> partial_lines_;  // per port, for the line fallback
  std::shared_ptr<virtio::Console> stdio_;
  std::shared_ptr<ExecChannel> exec_;  // over stdio_'s exec ports
  std::shared_ptr<virtio::Net> net_;
  std::shared_ptr<virtio::Block> image_slot_;  // the template's empty disk slot, if any
  size_t image_slot_index_ = 0;                // its virtio slot
  std::string pending_image_;                  // attached at start()
  int stdin_fd_ = -1;                          // attach_stdin(): the caller's, not owned
  std::thread stdin_pump_;
  std::atomic<bool> stdin_stop_{false};
  void stop_stdin_pump();
  bool published_ = false;  // ports were published since the last reset
  std::unique_ptr<Machine> machine_;
  uint32_t id_ = 0;
  uint64_t requested_ns_ = 0;
  // One bit per guest page per region, accumulated across harvests.
  std::vector<std::vector<uint64_t>> dirty_;
  bool dirty_tracking_ = true;
  bool restore_ahead_ = true;
  bool restored_ = false;  // template state is loaded and not yet run
};

}  // namespace vicvmm
