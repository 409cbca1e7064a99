// virtio-console (virtio 1.2, 5.3) with MULTIPORT: the container's stdio,
// apart from the kernel's serial console, and the exec channel. Five ports,
// found in the guest as /dev/vport0p0..4:
//   port 0 "stdin"    host -> guest; its end is PORT_OPEN(0, 0), which the
//                     guest reads as EOF once every byte before it is read
//   port 1 "stdout"   guest -> host
//   port 2 "stderr"   guest -> host
//   port 3 "exec-in"  host -> guest: framed requests (vic_exec_frame) for
//                     more processes in the running VM (docker exec)
//   port 4 "exec-out" guest -> host: their output and exits
// Byte-exact, binary-safe, no line-length limit; stdout and stderr arrive
// apart (the Docker API frames them separately).
//
// Queues, as the spec lays them out with MULTIPORT: 0/1 port 0 rx/tx,
// 2/3 control rx/tx, then 2(p+1)/2(p+1)+1 for port p ("rx" is device ->
// driver).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "vmm/unique_fd.h"
#include "vmm/virtio/device.h"

namespace vicvmm::virtio {

class Console : public Device {
 public:
  static constexpr uint32_t kPorts = 5;
  static constexpr uint32_t kStdin = 0, kStdout = 1, kStderr = 2, kExecIn = 3, kExecOut = 4;
  static constexpr size_t kMaxPendingInput = 64 * 1024;
  // Called on the I/O thread for every chunk the guest writes to port 1, 2
  // or 4, in order per port.
  using OutputFn = std::function<void(uint32_t port, std::span<const uint8_t> bytes)>;

  static Result<std::shared_ptr<Console>> create();

  const char* name() const override { return "console"; }
  uint32_t device_id() const override { return kDeviceConsole; }
  uint64_t features() const override;
  // The guest fills every receive queue with a page per slot at probe,
  // emulated kernel work here: small receive queues (port 0's 16 pages are
  // 64 KiB of stdin in flight, port 3's 8 hold 32 KiB of exec requests;
  // output ports never receive), transmit queues as large as the guest likes.
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 64, 8, 8, 1, 64, 1, 64, 8, 1, 1, 64}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void process(size_t queue, QueueHost& host) override;
  int completion_fd() const override { return wake_.get(); }
  void complete(QueueHost& host) override;
  void reset() override;
  void restored() override;

  void set_output(OutputFn fn);
  // Host -> guest stdin, from any thread: waits while kMaxPendingInput
  // bytes are queued (up to `timeout`); returns the bytes taken.
  size_t write_input(std::span<const uint8_t> bytes, std::chrono::milliseconds timeout) {
    return write_to(inputs_[0], bytes, timeout);
  }
  // No more stdin: the guest reads EOF after what is queued.
  void close_input();
  // Stdin again after an EOF (a clone whose template closed it): the guest
  // sees the host side open again (PORT_OPEN(0, 1), a control message and
  // an interrupt) and reads what write_input() queues next.
  void reopen_input();
  // Host -> guest on the exec-in port, like write_input(). The port stays
  // open for the VM's life; dropped (0 taken) until the guest opened it.
  size_t write_exec(std::span<const uint8_t> bytes, std::chrono::milliseconds timeout) {
    return write_to(inputs_[1], bytes, timeout);
  }

  uint64_t bytes_out(uint32_t port) const { return port < kPorts ? out_bytes_[port] : 0; }
  uint64_t bytes_in() const { return inputs_[0].bytes; }

 private:
  // A host -> guest port: stdin (0) or exec-in (3).
  struct InputPort {
    uint32_t port = 0;
    std::mutex mu;
    std::condition_variable space;
    std::deque<uint8_t> data;
    bool closed = false;           // the host side ended (stdin only)
    bool guest_open = false;       // the guest has the port open (I/O thread)
    bool eof_sent = false;         // I/O thread
    std::atomic<bool> reopen{false};
    uint64_t bytes = 0;
  };

  Console() = default;
  size_t write_to(InputPort& in, std::span<const uint8_t> bytes, std::chrono::milliseconds timeout);
  void control_from_guest(QueueHost& host);
  void output_from_guest(uint32_t port, QueueHost& host);
  void send_control(uint32_t id, uint16_t event, uint16_t value, std::string_view extra = {});
  void flush_control(QueueHost& host);  // pending control messages into the guest's buffers
  void deliver(QueueHost& host);         // ... and pending input
  void deliver(InputPort& in, QueueHost& host);
  void wake();

  UniqueFd wake_;
  OutputFn output_;
  std::mutex output_mu_;
  Chain chain_;
  std::vector<uint8_t> buf_;
  std::deque<std::vector<uint8_t>> control_out_;  // I/O thread only
  std::array<InputPort, 2> inputs_;
  std::array<uint64_t, kPorts> out_bytes_{};
};

}  // namespace vicvmm::virtio
