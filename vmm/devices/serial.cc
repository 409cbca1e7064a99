#include "vmm/devices/serial.h"

#include <unistd.h>

#include <cerrno>

#include <string_view>

namespace vicvmm {

namespace {
// Register offsets and bits (see the 16550A data sheet; names as Linux's serial_reg.h).
constexpr uint8_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRdi = 0x01, kIerThri = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThri = 0x02, kIirRdi = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLsrDr = 0x01, kLsrOe = 0x02, kLsrThre = 0x20, kLsrTemt = 0x40;
// A 16550A's receive FIFO: in loopback a guest's writes land there, and a
// real UART drops what does not fit (an overrun), so a guest flooding its
// own loopback costs 16 bytes, not host memory without bound.
constexpr size_t kRxFifo = 16;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMsrIdle = 0xb0;  // DCD | DSR | CTS: a cable is attached and ready
}  // namespace

Serial::Serial(int out_fd, IrqFn irq, LineFn on_line, bool unbuffered, uint64_t out_limit)
    : out_fd_(out_fd),
      irq_(std::move(irq)),
      on_line_(std::move(on_line)),
      unbuffered_(unbuffered),
      out_limit_(out_limit) {}

void Serial::read(uint64_t, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (auto& b : data) b = read_reg(offset);  // wider accesses repeat the byte register
}

void Serial::write(uint64_t, uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (uint8_t b : data) write_reg(offset, b);
}

uint8_t Serial::read_reg(uint64_t offset) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_.empty()) return 0;
      {
        uint8_t b = rx_.front();
        rx_.pop_front();
        return b;
      }
    case kIer: return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIir: {
      uint8_t fifo = fifo_enabled_ ? kIirFifo : 0;
      if ((ier_ & kIerRdi) && !rx_.empty()) return kIirRdi | fifo;
      if (thr_empty_pending_ && (ier_ & kIerThri)) {
        thr_empty_pending_ = false;  // reading IIR acknowledges THR-empty
        return kIirThri | fifo;
      }
      return kIirNone | fifo;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: {
      uint8_t lsr = kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr) | (overrun_ ? kLsrOe : 0);
      overrun_ = false;  // reading LSR clears the error bits
      return lsr;
    }
    case kMsr:
      // In loopback the modem inputs mirror the outputs; Linux probes this.
      if (mcr_ & kMcrLoop)  // DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
        return static_cast<uint8_t>(((mcr_ & 1) << 5) | ((mcr_ & 2) << 3) | ((mcr_ & 4) << 4) | ((mcr_ & 8) << 4));
      return kMsrIdle;
    case kScr: return scr_;
  }
  return 0;
}

void Serial::write_reg(uint64_t offset, uint8_t v) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) {
        dll_ = v;
        return;
      }
      if (mcr_ & kMcrLoop) {
        if (rx_.size() < kRxFifo) rx_.push_back(v);
        else overrun_ = true;
      } else {
        emit(v);
      }
      // We transmit instantly, so THR is empty again right away.
      if (ier_ & kIerThri) thr_empty_pending_ = true;
      update_interrupt();
      return;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = v;
        return;
      }
      // Enabling THRI while THR is empty raises the interrupt at once.
      if ((v & kIerThri) && !(ier_ & kIerThri)) thr_empty_pending_ = true;
      ier_ = v & 0x0f;
      update_interrupt();
      return;
    case kIir: fifo_enabled_ = v & 1; return;  // FCR
    case kLcr: lcr_ = v; return;
    case kMcr: mcr_ = v; return;
    case kScr: scr_ = v; return;
  }
}

void Serial::update_interrupt() {
  bool pending = (thr_empty_pending_ && (ier_ & kIerThri)) || ((ier_ & kIerRdi) && !rx_.empty());
  if (pending && irq_) irq_();
}

void Serial::emit(uint8_t byte) {
  ++bytes_out_;
  out_buf_.push_back(static_cast<char>(byte));
  if (on_line_) {
    if (byte == '\n') {
      on_line_(line_);
      line_.clear();
    } else if (line_.size() < 4096) {
      line_.push_back(static_cast<char>(byte));
    }
  }
  if (unbuffered_ || byte == '\n' || out_buf_.size() >= 4096) flush();
}

namespace {
// Writes all of `data` unless the sink fails; false when it is gone.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}
}  // namespace

void Serial::flush() {
  // Called from the destructor too, where mu_ may be unlocked; output order
  // is all that matters here, and only one thread emits.
  if (out_fd_ >= 0) {
    std::string_view data(out_buf_);
    bool now_cut = false;  // this flush is the first to reach the cap
    if (out_limit_ > 0 && bytes_written_ + data.size() > out_limit_) {
      size_t room = static_cast<size_t>(out_limit_ - bytes_written_);
      now_cut = bytes_dropped_ == 0;
      bytes_dropped_ += data.size() - room;
      data = data.substr(0, room);
    }
    // A failed write means the console sink is gone: drop output rather
    // than stall the guest.
    if (write_all(out_fd_, data)) {
      bytes_written_ += data.size();
      // Past the cap, once, so that a reader knows the output was cut.
      if (now_cut)
        write_all(out_fd_, "\n[vicvmm: console output limit of " + std::to_string(out_limit_) +
                               " bytes reached; further guest output is dropped]\n");
    }
  }
  out_buf_.clear();
}

SerialState Serial::save() const {
  std::lock_guard lock(mu_);
  return {ier_, lcr_, mcr_, scr_, dll_, dlm_, fifo_enabled_, thr_empty_pending_};
}

void Serial::restore(const SerialState& s) {
  std::lock_guard lock(mu_);
  ier_ = s.ier & 0x0f;
  lcr_ = s.lcr;
  mcr_ = s.mcr;
  scr_ = s.scr;
  dll_ = s.dll;
  dlm_ = s.dlm;
  fifo_enabled_ = s.fifo_enabled != 0;
  thr_empty_pending_ = s.thr_empty_pending != 0;
  rx_.clear();
  overrun_ = false;
}

void Serial::queue_input(std::string_view bytes) {
  std::lock_guard lock(mu_);
  rx_.insert(rx_.end(), bytes.begin(), bytes.end());
  update_interrupt();
}

}  // namespace vicvmm
