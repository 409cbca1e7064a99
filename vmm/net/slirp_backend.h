// User-mode networking for one VM: a libslirp instance (QEMU's user
// networking: NAT out, no root, no TAP) behind the VM's virtio-net. Every
// VM gets its own private 10.0.2.0/24: the guest is 10.0.2.15, the gateway
// (and the host's loopback, as seen from the guest) 10.0.2.2, DNS 10.0.2.3,
// so every clone of a template keeps the address, MAC and routes it booted
// with. Published ports forward host TCP/UDP ports to the guest.
//
// Threads: libslirp is not thread-safe, so only the process's one network
// thread ("vicvmm-net", serving every backend of the process) calls into it.
// Frames cross between that thread and the device in two queues.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vmm/net/port_forward.h"
#include "vmm/result.h"
#include "vmm/unique_fd.h"

struct Slirp;

namespace vicvmm::net {

struct Timer;  // a libslirp timer (slirp_backend.cc)

inline constexpr const char* kGuestAddress = "10.0.2.15";
inline constexpr const char* kGatewayAddress = "10.0.2.2";
inline constexpr const char* kDnsAddress = "10.0.2.3";
inline constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

class SlirpBackend {
 public:
  static constexpr size_t kMaxQueuedFrames = 512;

  static Result<std::shared_ptr<SlirpBackend>> create(const std::vector<PortForward>& forwards);
  // Starts the process's network thread now (create() does it too): a
  // thread that confines itself and later makes backends calls this first,
  // since a thread it started would inherit its filter.
  static Result<> start_network_thread();
  ~SlirpBackend();

  // Adds published ports now (a clone's, at its start; any thread: the
  // network thread does it, and this waits). All or none.
  Result<> publish(const std::vector<PortForward>& forwards);
  // Removes every published port (a clone's reset).
  void unpublish_all();

  // Guest -> network (any thread).
  void send_from_guest(std::vector<uint8_t> frame);
  // Network -> guest: frames waiting for the device (any thread).
  bool take_for_guest(std::vector<uint8_t>& frame);
  // Readable when frames wait for the guest (the device's completion fd).
  int to_guest_fd() const { return to_guest_event_.get(); }
  uint64_t dropped() const;

  // Called on the network thread only.
  void loop_input();                      // queued guest frames into slirp
  Slirp* slirp() { return slirp_; }
  void queue_for_guest(const uint8_t* data, size_t len);
  // libslirp's timers: touched only by whichever thread owns slirp_ (the
  // network thread, or the creating/destroying thread while unregistered).
  std::vector<Timer*>& timers() { return timers_; }

 private:
  SlirpBackend() = default;
  Slirp* slirp_ = nullptr;
  UniqueFd to_guest_event_;
  mutable std::mutex mu_;
  std::deque<std::vector<uint8_t>> to_guest_, to_slirp_;
  uint64_t dropped_ = 0;
  std::vector<Timer*> timers_;
  std::vector<PortForward> published_;  // network thread (or while unregistered)
  Result<> add_forwards(const std::vector<PortForward>& forwards);
  void remove_forwards();
};

}  // namespace vicvmm::net
