#include "serve/worker_protocol.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace vicvmm::serve {

namespace {
constexpr size_t kMaxMessage = 256 * 1024;  // a spec is bounded by the 128 KiB mailbox
constexpr size_t kMaxFds = 4;

template <class T>
Result<T> get(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return T{};
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return err("container spec: '{}' is not a string", key);
    return it->template get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return err("container spec: '{}' is not a boolean", key);
    return it->template get<bool>();
  } else if constexpr (std::is_same_v<T, uint32_t>) {
    if (!it->is_number_unsigned()) return err("container spec: '{}' is not an unsigned number", key);
    return it->template get<uint32_t>();
  } else {
    if (!it->is_array()) return err("container spec: '{}' is not a list", key);
    T out;
    for (const auto& e : *it) {
      if (!e.is_string()) return err("container spec: '{}' holds a non-string", key);
      out.push_back(e.get<std::string>());
    }
    return out;
  }
}
}  // namespace

nlohmann::json to_json(const ContainerSpec& s) {
  return {{"id", s.id},         {"argv", s.argv},       {"env", s.env},
          {"workdir", s.workdir}, {"user", s.user},       {"hostname", s.hostname},
          {"image_disk", s.image_disk}, {"template_dir", s.template_dir}, {"publish", s.publish}, {"tty", s.tty}, {"open_stdin", s.open_stdin},
          {"exit_file", s.exit_file},   {"exec_socket", s.exec_socket}, {"clone_id", s.clone_id}};
}

Result<ContainerSpec> spec_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return err("container spec: not a JSON object");
  ContainerSpec s;
  VIC_ASSIGN(s.id, get<std::string>(j, "id"));
  VIC_ASSIGN(s.argv, get<std::vector<std::string>>(j, "argv"));
  VIC_ASSIGN(s.env, get<std::vector<std::string>>(j, "env"));
  VIC_ASSIGN(s.workdir, get<std::string>(j, "workdir"));
  VIC_ASSIGN(s.user, get<std::string>(j, "user"));
  VIC_ASSIGN(s.hostname, get<std::string>(j, "hostname"));
  VIC_ASSIGN(s.image_disk, get<std::string>(j, "image_disk"));
  VIC_ASSIGN(s.template_dir, get<std::string>(j, "template_dir"));
  VIC_ASSIGN(s.publish, get<std::vector<std::string>>(j, "publish"));
  VIC_ASSIGN(s.tty, get<bool>(j, "tty"));
  VIC_ASSIGN(s.open_stdin, get<bool>(j, "open_stdin"));
  VIC_ASSIGN(s.exit_file, get<std::string>(j, "exit_file"));
  VIC_ASSIGN(s.exec_socket, get<std::string>(j, "exec_socket"));
  VIC_ASSIGN(s.clone_id, get<uint32_t>(j, "clone_id"));
  if (s.argv.empty()) return err("container spec: no command");
  return s;
}

nlohmann::json to_json(const ExecSpec& s) {
  return {{"argv", s.argv}, {"env", s.env}, {"workdir", s.workdir}, {"user", s.user}, {"tty", s.tty},
          {"open_stdin", s.open_stdin}, {"stdout", s.attach_stdout}, {"stderr", s.attach_stderr}};
}

Result<ExecSpec> exec_spec_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return err("exec spec: not a JSON object");
  ExecSpec s;
  VIC_ASSIGN(s.argv, get<std::vector<std::string>>(j, "argv"));
  VIC_ASSIGN(s.env, get<std::vector<std::string>>(j, "env"));
  VIC_ASSIGN(s.workdir, get<std::string>(j, "workdir"));
  VIC_ASSIGN(s.user, get<std::string>(j, "user"));
  VIC_ASSIGN(s.tty, get<bool>(j, "tty"));
  VIC_ASSIGN(s.open_stdin, get<bool>(j, "open_stdin"));
  VIC_ASSIGN(s.attach_stdout, get<bool>(j, "stdout"));
  VIC_ASSIGN(s.attach_stderr, get<bool>(j, "stderr"));
  if (s.argv.empty()) return err("exec spec: no command");
  return s;
}

namespace {
// "/proc/self/fd/N/NAME" for the directory of `path` opened as N: short
// enough for sun_path whatever the state directory's length.
struct UnixAddress {
  UniqueFd dir;
  sockaddr_un addr{};
};
Result<UnixAddress> unix_address(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  UnixAddress a;
  a.dir.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!a.dir) return sys_err("socket {}: its directory", path);
  std::string via = fmt::format("/proc/self/fd/{}/{}", a.dir.get(), name);
  if (via.size() >= sizeof a.addr.sun_path) return err("socket {}: the name is too long", path);
  a.addr.sun_family = AF_UNIX;
  std::memcpy(a.addr.sun_path, via.c_str(), via.size() + 1);
  return a;
}
}  // namespace

Result<UniqueFd> listen_seqpacket(const std::string& path) {
  VIC_ASSIGN(UnixAddress a, unix_address(path));
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return sys_err("socket {}", path);
  ::unlink(path.c_str());  // a stale one from an earlier run of this container
  if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&a.addr), sizeof a.addr) != 0) return sys_err("bind {}", path);
  ::chmod(path.c_str(), 0600);
  if (::listen(s.get(), 16) != 0) return sys_err("listen {}", path);
  return s;
}

Result<UniqueFd> connect_seqpacket(const std::string& path) {
  VIC_ASSIGN(UnixAddress a, unix_address(path));
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return sys_err("socket {}", path);
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a.addr), sizeof a.addr) != 0)
    return sys_err("connect {}", path);
  return s;
}

Result<> send_message(int sock, const nlohmann::json& msg, const std::vector<int>& fds) {
  if (fds.size() > kMaxFds) return err("control message: {} file descriptors (at most {})", fds.size(), kMaxFds);
  std::string text = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > kMaxMessage) return err("control message: {} bytes (at most {})", text.size(), kMaxMessage);
  iovec iov{text.data(), text.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n >= 0) return {};
    if (errno != EINTR) return sys_err("control message: sendmsg");
  }
}

// One buffer per thread, made once: a fresh 256 KiB buffer per message
// (zeroed, and mapped anew by malloc at that size) cost more than the rest
// of a container's start message.
static std::vector<char>& message_buffer() {
  thread_local std::vector<char> buf(kMaxMessage);
  return buf;
}

void prepare_recv_buffer() { (void)message_buffer(); }

Result<Message> recv_message(int sock, const char* peer) {
  std::vector<char>& buf = message_buffer();
  iovec iov{buf.data(), buf.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_err("control message from {}: recvmsg", peer);
  Message m;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        m.fds.emplace_back(fd);
      }
    }
  if (n == 0) return err("{} closed its control socket", peer);
  if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return err("control message from {}: truncated", peer);
  m.body = nlohmann::json::parse(buf.data(), buf.data() + n, nullptr, false);
  if (m.body.is_discarded() || !m.body.is_object()) return err("control message from {}: not a JSON object", peer);
  return m;
}

std::string frame(uint8_t stream, std::string_view bytes) {
  std::string out(8, '\0');
  out[0] = static_cast<char>(stream);
  uint32_t n = static_cast<uint32_t>(bytes.size());
  out[4] = static_cast<char>(n >> 24);
  out[5] = static_cast<char>(n >> 16);
  out[6] = static_cast<char>(n >> 8);
  out[7] = static_cast<char>(n);
  out.append(bytes);
  return out;
}

}  // namespace vicvmm::serve
