#include "vmm/agent/exec_channel.h"

#include <cstring>

#include "vmm/virtio/console.h"

namespace vicvmm {

namespace {
constexpr size_t kHeader = sizeof(vic_exec_frame);

int wait_status(uint32_t encoded) {
  return (encoded & VIC_EXIT_SIGNALED) ? 128 + static_cast<int>(encoded & 0xff) : static_cast<int>(encoded & 0xff);
}

void append(std::vector<uint8_t>& out, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
}  // namespace

std::unique_ptr<ExecChannel> ExecChannel::over(std::shared_ptr<virtio::Console> console) {
  return std::make_unique<ExecChannel>([console](std::span<const uint8_t> bytes) -> Result<> {
    // The guest's agent reads the port in its poll loop; a guest that stops
    // reading for this long has a broken channel.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (size_t done = 0; done < bytes.size();) {
      if (std::chrono::steady_clock::now() > deadline) return err("exec channel: the guest stopped reading its exec port");
      done += console->write_exec(bytes.subspan(done), std::chrono::milliseconds(100));
    }
    return {};
  });
}

Result<> ExecChannel::send_frame(uint32_t type, uint32_t id, std::span<const uint8_t> payload) {
  if (payload.size() > VIC_EXEC_MAX_PAYLOAD) return err("exec channel: a frame of {} bytes", payload.size());
  std::vector<uint8_t> frame;
  frame.reserve(kHeader + payload.size());
  vic_exec_frame h{type, id, static_cast<uint32_t>(payload.size())};
  append(frame, &h, kHeader);
  append(frame, payload.data(), payload.size());
  Result<> sent;
  {
    std::lock_guard lock(send_mu_);
    sent = send_(frame);
  }
  if (!sent) close(sent.error().message);  // a frame cut short leaves the stream unreadable
  return sent;
}

Result<uint32_t> ExecChannel::start(const ExecRequest& req, ExecEvents events) {
  if (req.argv.empty() || req.argv[0].empty()) return err("exec: no command");
  if (req.argv.size() + req.env.size() > 1024) return err("exec: {} arguments and variables, at most 1024", req.argv.size() + req.env.size());
  std::vector<uint8_t> p;
  uint32_t flags = (req.tty ? VIC_EXEC_TTY : 0) | (req.open_stdin ? VIC_EXEC_OPEN_STDIN : 0);
  uint32_t argc = static_cast<uint32_t>(req.argv.size()), envc = static_cast<uint32_t>(req.env.size());
  append(p, &flags, 4);
  append(p, &argc, 4);
  append(p, &envc, 4);
  auto add = [&](const std::string& s, const char* what) -> Result<> {
    if (s.find('\0') != std::string::npos) return err("exec: the {} holds a NUL byte", what);
    append(p, s.c_str(), s.size() + 1);
    return {};
  };
  for (const auto& a : req.argv) VIC_TRY(add(a, "command"));
  for (const auto& e : req.env) VIC_TRY(add(e, "environment"));
  VIC_TRY(add(req.workdir, "working directory"));
  VIC_TRY(add(req.user, "user"));
  if (p.size() > VIC_EXEC_MAX_PAYLOAD)
    return err("exec: the command and environment take {} bytes, at most {}", p.size(), VIC_EXEC_MAX_PAYLOAD);
  uint32_t id;
  {
    std::lock_guard lock(mu_);
    if (closed_) return err("exec: {}", closed_reason_);
    if (sessions_.size() >= VIC_EXEC_MAX_SESSIONS)
      return err("exec: {} sessions already run in this VM", sessions_.size());
    id = next_id_++;
    sessions_[id] = std::make_shared<ExecEvents>(std::move(events));
  }
  if (auto r = send_frame(VIC_EXEC_START, id, p); !r) return tl::unexpected(r.error());
  return id;
}

Result<> ExecChannel::write_stdin(uint32_t id, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    size_t n = std::min<size_t>(bytes.size(), VIC_EXEC_MAX_PAYLOAD);
    VIC_TRY(send_frame(VIC_EXEC_STDIN, id, bytes.first(n)));
    bytes = bytes.subspan(n);
  }
  return {};
}

Result<> ExecChannel::close_stdin(uint32_t id) { return send_frame(VIC_EXEC_STDIN_EOF, id, {}); }

Result<> ExecChannel::signal(uint32_t id, int sig) {
  if (sig <= 0 || sig > 64) return err("exec: signal {} out of range", sig);
  uint32_t s = static_cast<uint32_t>(sig);
  return send_frame(VIC_EXEC_SIGNAL, id, {reinterpret_cast<const uint8_t*>(&s), 4});
}

Result<> ExecChannel::resize(uint32_t id, uint16_t rows, uint16_t cols) {
  uint16_t rc[2] = {rows, cols};
  return send_frame(VIC_EXEC_RESIZE, id, {reinterpret_cast<const uint8_t*>(rc), 4});
}

void ExecChannel::deliver(const vic_exec_frame& h, std::span<const uint8_t> payload) {
  std::shared_ptr<ExecEvents> ev;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(h.id);
    if (it == sessions_.end()) return;  // unknown or over: ignored
    ev = it->second;
    if (h.type == VIC_EXEC_EXIT) sessions_.erase(it);
  }
  switch (h.type) {
    case VIC_EXEC_STARTED:
      if (payload.size() == 4 && ev->started) {
        uint32_t pid;
        std::memcpy(&pid, payload.data(), 4);
        ev->started(pid);
      }
      break;
    case VIC_EXEC_STDOUT:
    case VIC_EXEC_STDERR:
      if (ev->output) ev->output(h.type == VIC_EXEC_STDOUT ? 1 : 2, payload);
      break;
    case VIC_EXEC_EXIT: {
      uint32_t status = 255;
      if (payload.size() == 4) std::memcpy(&status, payload.data(), 4);
      if (ev->exited) ev->exited(wait_status(status), payload.size() == 4 ? "" : "exec: malformed exit from the guest");
      break;
    }
    default: break;
  }
}

void ExecChannel::on_guest_bytes(std::span<const uint8_t> bytes) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
  }
  partial_.insert(partial_.end(), bytes.begin(), bytes.end());
  size_t pos = 0;
  while (partial_.size() - pos >= kHeader) {
    vic_exec_frame h;
    std::memcpy(&h, partial_.data() + pos, kHeader);
    if (h.len > VIC_EXEC_MAX_PAYLOAD) {
      partial_.clear();
      close(fmt::format("exec: the guest sent a frame of {} bytes (at most {}); channel closed", h.len,
                        VIC_EXEC_MAX_PAYLOAD));
      return;
    }
    if (partial_.size() - pos < kHeader + h.len) break;
    deliver(h, {partial_.data() + pos + kHeader, h.len});
    pos += kHeader + h.len;
  }
  partial_.erase(partial_.begin(), partial_.begin() + static_cast<ptrdiff_t>(pos));
}

void ExecChannel::close(const std::string& reason) {
  std::map<uint32_t, std::shared_ptr<ExecEvents>> ended;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    closed_reason_ = reason;
    ended.swap(sessions_);
  }
  for (auto& [id, ev] : ended)
    if (ev->exited) ev->exited(255, reason);
}

void ExecChannel::reopen() {
  std::lock_guard lock(mu_);
  closed_ = false;
  closed_reason_.clear();
  partial_.clear();
}

size_t ExecChannel::sessions() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

}  // namespace vicvmm
