#include "vmm/virtio/console.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

namespace vicvmm::virtio {

namespace {
constexpr uint64_t kFMultiport = 1ull << 1;
// Control events (5.3.6.2).
constexpr uint16_t kDeviceReady = 0, kPortAdd = 1, kPortReady = 3, kPortOpen = 6, kPortName = 7;
constexpr size_t kControlBytes = 8;  // id u32, event u16, value u16
constexpr uint32_t kQueueControlRx = 2, kQueueControlTx = 3;
constexpr const char* kPortNames[Console::kPorts] = {"stdin", "stdout", "stderr", "exec-in", "exec-out"};

constexpr uint32_t rx_queue(uint32_t port) { return port == 0 ? 0 : 2 * (port + 1); }
// Output chunks go to the callback in pieces of at most this much.
constexpr size_t kOutputChunk = 64 * 1024;
}  // namespace

Result<std::shared_ptr<Console>> Console::create() {
  std::shared_ptr<Console> c(new Console);
  c->wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!c->wake_) return sys_err("virtio-console: eventfd");
  c->buf_.resize(kOutputChunk);
  c->inputs_[0].port = kStdin;
  c->inputs_[1].port = kExecIn;
  return c;
}

uint64_t Console::features() const { return kFMultiport; }

void Console::read_config(uint64_t offset, std::span<uint8_t> data) {
  // cols u16, rows u16, max_nr_ports u32, emerg_wr u32.
  uint8_t cfg[12] = {};
  uint32_t ports = kPorts;
  std::memcpy(cfg + 4, &ports, 4);
  read_config_window(cfg, offset, data);
}

void Console::set_output(OutputFn fn) {
  std::lock_guard lock(output_mu_);
  output_ = std::move(fn);
}

void Console::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_.get(), &one, sizeof one);
  (void)n;  // EAGAIN: already pending
}

size_t Console::write_to(InputPort& in, std::span<const uint8_t> bytes, std::chrono::milliseconds timeout) {
  std::unique_lock lock(in.mu);
  if (in.closed) return 0;
  in.space.wait_for(lock, timeout, [&] { return in.data.size() < kMaxPendingInput || in.closed; });
  if (in.closed) return 0;
  size_t n = std::min(bytes.size(), kMaxPendingInput - std::min(kMaxPendingInput, in.data.size()));
  in.data.insert(in.data.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
  lock.unlock();
  if (n) wake();
  return n;
}

void Console::close_input() {
  InputPort& in = inputs_[0];
  {
    std::lock_guard lock(in.mu);
    in.closed = true;
  }
  in.space.notify_all();
  wake();
}

void Console::reopen_input() {
  InputPort& in = inputs_[0];
  {
    std::lock_guard lock(in.mu);
    in.closed = false;
    in.data.clear();
  }
  in.reopen = true;
  wake();
}

void Console::reset() {
  // The driver resets the device at probe: the host's pending stdin (piped
  // in before the guest got here) must survive it. Exec requests belong to
  // the VM that was running: a reset clone must not inherit them.
  control_out_.clear();
  for (InputPort& in : inputs_) {
    std::lock_guard lock(in.mu);
    in.guest_open = in.eof_sent = false;
    if (in.port == kExecIn) in.data.clear();
  }
}

void Console::restored() {
  // The template's guest finished the port handshake and keeps stdin and
  // exec-in open, and its stdin was closed before the capture
  // (Template::boot), so a clone starts with no control message to send
  // and no interrupt to raise.
  inputs_[0].guest_open = inputs_[0].eof_sent = true;
  inputs_[1].guest_open = true;
  inputs_[1].eof_sent = false;
}

void Console::send_control(uint32_t id, uint16_t event, uint16_t value, std::string_view extra) {
  std::vector<uint8_t> m(kControlBytes + extra.size());
  std::memcpy(m.data(), &id, 4);
  std::memcpy(m.data() + 4, &event, 2);
  std::memcpy(m.data() + 6, &value, 2);
  if (!extra.empty()) std::memcpy(m.data() + kControlBytes, extra.data(), extra.size());  // memcpy(_, nullptr, 0) is UB
  control_out_.push_back(std::move(m));
}

void Console::control_from_guest(QueueHost& host) {
  SplitQueue& q = host.queue(kQueueControlTx);
  while (q.pop(host.memory(), chain_)) {
    uint8_t m[kControlBytes];
    if (chain_.read(0, m) != sizeof m) {
      q.fail(QueueFault::MalformedRequest);
      return;
    }
    uint32_t id;
    uint16_t event, value;
    std::memcpy(&id, m, 4);
    std::memcpy(&event, m + 4, 2);
    std::memcpy(&value, m + 6, 2);
    if (event == kDeviceReady && value == 1) {
      for (uint32_t p = 0; p < kPorts; ++p) send_control(p, kPortAdd, 0);
    } else if (event == kPortReady && value == 1 && id < kPorts) {
      send_control(id, kPortName, 0, kPortNames[id]);
      send_control(id, kPortOpen, 1);  // the host side is there
    } else if (event == kPortOpen) {
      for (InputPort& in : inputs_)
        if (in.port == id) in.guest_open = value == 1;
    }
    q.push_used(chain_.head, 0);
  }
}

void Console::output_from_guest(uint32_t port, QueueHost& host) {
  SplitQueue& q = host.queue(rx_queue(port) + 1);
  OutputFn out;
  {
    std::lock_guard lock(output_mu_);
    out = output_;
  }
  while (q.pop(host.memory(), chain_)) {
    if (port != kStdin && port != kExecIn) {
      for (uint64_t off = 0; off < chain_.readable_bytes;) {
        size_t n = chain_.read(off, buf_);
        if (n == 0) break;
        if (out) out(port, {buf_.data(), n});
        out_bytes_[port] += n;
        off += n;
      }
    }
    q.push_used(chain_.head, 0);
  }
}

void Console::flush_control(QueueHost& host) {
  SplitQueue& cq = host.queue(kQueueControlRx);
  while (!control_out_.empty() && cq.pop(host.memory(), chain_)) {
    size_t n = chain_.write(0, control_out_.front());
    cq.push_used(chain_.head, static_cast<uint32_t>(n));
    control_out_.pop_front();
  }
}

void Console::deliver(QueueHost& host) {
  if (inputs_[0].reopen.exchange(false)) {
    inputs_[0].eof_sent = false;
    send_control(kStdin, kPortOpen, 1);
  }
  flush_control(host);
  for (InputPort& in : inputs_) deliver(in, host);
}

void Console::deliver(InputPort& in, QueueHost& host) {
  // The guest opens a port only after it exists, and drops data for a port
  // nobody has open: wait for its PORT_OPEN(port, 1).
  if (!in.guest_open) return;
  SplitQueue& q = host.queue(rx_queue(in.port));
  bool freed = false, closed = false;
  {
    std::lock_guard lock(in.mu);
    while (!in.data.empty()) {
      // Only take a buffer when there is something to put in it.
      if (!q.pop(host.memory(), chain_)) break;
      size_t n = std::min<uint64_t>(in.data.size(), chain_.writable_bytes);
      std::vector<uint8_t> tmp(in.data.begin(), in.data.begin() + static_cast<ptrdiff_t>(n));
      size_t done = chain_.write(0, tmp);
      in.data.erase(in.data.begin(), in.data.begin() + static_cast<ptrdiff_t>(done));
      in.bytes += done;
      q.push_used(chain_.head, static_cast<uint32_t>(done));
      freed = true;
      if (done == 0) break;  // a zero-length buffer: wait for another
    }
    closed = in.closed && in.data.empty();
  }
  if (freed) in.space.notify_all();
  if (closed && !in.eof_sent) {
    in.eof_sent = true;
    send_control(in.port, kPortOpen, 0);
    flush_control(host);
  }
}

void Console::process(size_t queue, QueueHost& host) {
  switch (queue) {
    case kQueueControlTx: control_from_guest(host); break;
    case 1: output_from_guest(kStdin, host); break;
    case 5: output_from_guest(kStdout, host); break;
    case 7: output_from_guest(kStderr, host); break;
    case 9: output_from_guest(kExecIn, host); break;  // nothing expected: buffers returned
    case 11: output_from_guest(kExecOut, host); break;
    default: break;  // an rx queue got buffers: deliver below
  }
  deliver(host);
}

void Console::complete(QueueHost& host) {
  uint64_t n;
  ssize_t r = ::read(wake_.get(), &n, sizeof n);
  (void)r;
  deliver(host);
}

}  // namespace vicvmm::virtio
