// A 16550A-compatible UART (the "8250" Linux's console driver talks to):
// transmit goes to a host fd, receive comes from queued host input, and the
// THR-empty / data-ready interrupts are raised through `irq`.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "vmm/devices/bus.h"

namespace vicvmm {

// The guest-visible register state, for templates and snapshots.
struct SerialState {
  uint8_t ier = 0, lcr = 0, mcr = 0, scr = 0, dll = 0x0c, dlm = 0;
  uint8_t fifo_enabled = 0, thr_empty_pending = 0;
};

class Serial : public BusDevice {
 public:
  using IrqFn = std::function<void()>;            // pulses the UART's interrupt line
  using LineFn = std::function<void(const std::string&)>;  // sees each complete output line

  // out_fd < 0 discards output (it is still passed to `on_line`).
  // out_limit > 0 caps the bytes written to out_fd: a guest that floods its
  // console cannot fill the host's disk; past the cap one note is written and
  // the rest dropped, while `on_line` (panic detection) keeps seeing it all.
  Serial(int out_fd, IrqFn irq, LineFn on_line = {}, bool unbuffered = false, uint64_t out_limit = 0);
  ~Serial() override { flush(); }

  const char* name() const override { return "serial"; }
  void read(uint64_t base, uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t base, uint64_t offset, std::span<const uint8_t> data) override;

  // Host input for the guest (from the stdin thread).
  void queue_input(std::string_view bytes);
  // Writes out buffered output (called when the VM stops).
  void flush();

  uint64_t bytes_out() const { return bytes_out_; }
  // Bytes the guest wrote past `out_limit` (not written to out_fd).
  uint64_t bytes_dropped() const { return bytes_dropped_; }

  SerialState save() const;
  void restore(const SerialState& s);

 private:
  uint8_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint8_t v);
  void emit(uint8_t byte);
  void update_interrupt();

  int out_fd_;
  IrqFn irq_;
  LineFn on_line_;
  bool unbuffered_;
  uint64_t out_limit_;
  uint64_t bytes_written_ = 0, bytes_dropped_ = 0;

  mutable std::mutex mu_;
  std::deque<uint8_t> rx_;
  bool overrun_ = false;  // a loopback byte found the receive FIFO full
  std::string out_buf_, line_;
  uint64_t bytes_out_ = 0;

  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
  bool fifo_enabled_ = false;
  bool thr_empty_pending_ = false;
};

}  // namespace vicvmm
