// virtio-console (virtio 1.2, 5.3) with MULTIPORT: the container's stdio,
// apart from the kernel's serial console. Three ports, found in the guest
// as /dev/vport0p0..2 (vic-init makes them the command's fds 0-2):
//   port 0 "stdin"  host -> guest; its end is PORT_OPEN(0, 0), which the
//                   guest reads as EOF once every byte before it is read
//   port 1 "stdout" guest -> host
//   port 2 "stderr" guest -> host
// Byte-exact, binary-safe, no line-length limit; stdout and stderr arrive
// apart (the Docker API frames them separately).
//
// Queues, as the spec lays them out with MULTIPORT: 0/1 port 0 rx/tx,
// 2/3 control rx/tx, 4/5 port 1, 6/7 port 2 ("rx" is device -> driver).
#pragma once

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
  static constexpr uint32_t kPorts = 3;
  static constexpr uint32_t kStdin = 0, kStdout = 1, kStderr = 2;
  static constexpr size_t kMaxPendingInput = 64 * 1024;
  // Called on the I/O thread for every chunk the guest writes to port 1 or
  // 2, in order per port.
  using OutputFn = std::function<void(uint32_t port, std::span<const uint8_t> bytes)>;

  static Result<std::shared_ptr<Console>> create();

  const char* name() const override { return "console"; }
  uint32_t device_id() const override { return kDeviceConsole; }
  uint64_t features() const override;
  // The guest fills every receive queue with a page per slot at probe,
  // emulated kernel work here: small receive queues (port 0's 16 pages are
  // 64 KiB of stdin in flight; stdout/stderr never receive), transmit
  // queues as large as the guest likes.
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 64, 8, 8, 1, 64, 1, 64}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void process(size_t queue, QueueHost& host) override;
  int completion_fd() const override { return wake_.get(); }
  void complete(QueueHost& host) override;
  void reset() override;
  void restored() override;

  void set_output(OutputFn fn);
  // Host -> guest stdin, from any thread: waits while kMaxPendingInput
  // bytes are queued (up to `timeout`); returns the bytes taken.
  size_t write_input(std::span<const uint8_t> bytes, std::chrono::milliseconds timeout);
  // No more stdin: the guest reads EOF after what is queued.
  void close_input();
  // Stdin again after an EOF (a clone whose template closed it): the guest
  // sees the host side open again (PORT_OPEN(0, 1), a control message and
  // an interrupt) and reads what write_input() queues next.
  void reopen_input();

  uint64_t bytes_out(uint32_t port) const { return port < kPorts ? out_bytes_[port] : 0; }
  uint64_t bytes_in() const { return in_bytes_; }

 private:
  Console() = default;
  void control_from_guest(QueueHost& host);
  void output_from_guest(uint32_t port, QueueHost& host);
  void send_control(uint32_t id, uint16_t event, uint16_t value, std::string_view extra = {});
  void flush_control(QueueHost& host);  // pending control messages into the guest's buffers
  void deliver(QueueHost& host);         // ... and stdin  // pending control messages and stdin into rx buffers
  void wake();

  UniqueFd wake_;
  OutputFn output_;
  std::mutex output_mu_;
  Chain chain_;
  std::vector<uint8_t> buf_;
  std::deque<std::vector<uint8_t>> control_out_;  // I/O thread only
  bool stdin_open_ = false;       // the guest has port 0 open (vic-init keeps it so)
  bool eof_sent_ = false;
  std::atomic<bool> reopen_{false};  // reopen_input() asked; the I/O thread does it

  std::mutex in_mu_;
  std::condition_variable in_space_;
  std::deque<uint8_t> input_;
  bool input_closed_ = false;

  std::array<uint64_t, kPorts> out_bytes_{};
  uint64_t in_bytes_ = 0;
};

}  // namespace vicvmm::virtio
