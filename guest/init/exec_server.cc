// PID 1's wait for the container's command, and the exec channel: while
// the command runs, the host may ask for more processes in this VM (docker
// exec) over the exec ports (guest/abi/vicvmm_abi.h). One poll loop, no
// threads: a SIGCHLD signalfd, the exec-in port, and each session's output.
//
// The host is the VMM, but its frames are checked like any input: a frame
// too long or of an unknown session is dropped, never trusted.

#include "guest/abi/vicvmm_abi.h"
#include "guest/init/vic-init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char** environ;

namespace {

constexpr size_t kHeader = sizeof(vic_exec_frame);
constexpr size_t kMaxPendingInput = 64 * 1024;  // per session: then the exec-in port waits

struct Session {
  bool used = false;
  uint32_t id = 0;
  pid_t pid = 0;
  bool tty = false;
  int in = -1;            // the process's stdin (write end), or -1
  int out = -1, err = -1; // its stdout / stderr (read ends; a tty's master is `out`)
  bool exited = false;
  int status = 0;
  bool eof_asked = false;  // close `in` once `pending` is written
  char* pending = nullptr; // stdin bytes not yet taken by the process
  size_t pending_len = 0;
  // The command's own terminal (session 0): raw bytes to and from the
  // stdio ports instead of frames.
  int raw_in = -1, raw_out = -1;
};

// [0] is the command's own terminal (VIC_MB_TTY), [1..] the host's sessions.
Session sessions[VIC_EXEC_MAX_SESSIONS + 1];
int exec_out_fd = -1;
bool in_image = false;

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// One frame to the host, in one writev (the port keeps it whole).
void send_frame(uint32_t type, uint32_t id, const void* data, size_t len) {
  if (exec_out_fd < 0) return;
  vic_exec_frame h{type, id, static_cast<uint32_t>(len)};
  iovec iov[2] = {{&h, kHeader}, {const_cast<void*>(data), len}};
  size_t total = kHeader + len;
  int n = len ? 2 : 1;
  iovec* v = iov;
  while (total > 0) {
    ssize_t w = writev(exec_out_fd, v, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // the host is gone: nothing to tell
    total -= static_cast<size_t>(w);
    while (n > 0 && static_cast<size_t>(w) >= v->iov_len) {
      w -= static_cast<ssize_t>(v->iov_len);
      ++v, --n;
    }
    if (n > 0) {
      v->iov_base = static_cast<char*>(v->iov_base) + w;
      v->iov_len -= static_cast<size_t>(w);
    }
  }
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

Session* find(uint32_t id) {
  for (auto& s : sessions)
    if (s.used && s.id == id) return &s;
  return nullptr;
}

uint32_t encode_status(int st) {
  return WIFSIGNALED(st) ? (VIC_EXIT_SIGNALED | WTERMSIG(st)) : static_cast<uint32_t>(WEXITSTATUS(st));
}

void end_session(Session& s) {
  close_fd(s.in);
  close_fd(s.out);
  close_fd(s.err);
  free(s.pending);
  uint32_t status = encode_status(s.status);
  send_frame(VIC_EXEC_EXIT, s.id, &status, sizeof status);
  s = Session{};
}

// Reads what one output descriptor has now; false at EOF or error.
bool forward_output(Session& s, int& fd, uint32_t type) {
  static char buf[16 * 1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      if (s.raw_out >= 0) write_all(s.raw_out, buf, static_cast<size_t>(n));
      else send_frame(type, s.id, buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof buf) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    close_fd(fd);  // EOF, or EIO: a tty whose last user is gone
    return false;
  }
}

// The session's process is gone: what it wrote before is still in its
// pipes (or tty); send that, then the exit. A background child that keeps
// the pipes open does not hold the exit back.
void finish_if_exited(Session& s) {
  if (!s.exited) return;
  if (s.out >= 0) forward_output(s, s.out, VIC_EXEC_STDOUT);
  if (s.err >= 0) forward_output(s, s.err, VIC_EXEC_STDERR);
  end_session(s);
}

void flush_input(Session& s) {
  while (s.pending_len > 0 && s.in >= 0) {
    ssize_t n = write(s.in, s.pending, s.pending_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {  // the process closed its stdin: drop what it will never read
      close_fd(s.in);
      s.pending_len = 0;
      break;
    }
    memmove(s.pending, s.pending + n, s.pending_len - static_cast<size_t>(n));
    s.pending_len -= static_cast<size_t>(n);
  }
  if (s.pending_len == 0 && s.eof_asked && !s.tty) close_fd(s.in);
}

// The command's terminal input from the stdin port. At its EOF (or with
// no stdin at all) the terminal stays open, as docker's does.
void read_raw_input(Session& s) {
  char buf[4096];
  ssize_t n = read(s.raw_in, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    s.raw_in = -1;  // the port itself stays PID 1's
    return;
  }
  if (char* grown = static_cast<char*>(realloc(s.pending, s.pending_len + static_cast<size_t>(n)))) {
    s.pending = grown;
    memcpy(s.pending + s.pending_len, buf, static_cast<size_t>(n));
    s.pending_len += static_cast<size_t>(n);
  }
  flush_input(s);
}

bool input_blocked() {
  for (auto& s : sessions)
    if (s.used && s.pending_len >= kMaxPendingInput) return true;
  return false;
}

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// The process of a START frame. Payload: u32 flags, argc, envc, then the
// strings. A malformed request is dropped; one that cannot be forked ends
// at once with status 126.
void start_session(uint32_t id, const char* p, size_t len) {
  uint32_t flags, argc, envc;
  if (find(id) || len < 12) return;
  memcpy(&flags, p, 4);
  memcpy(&argc, p + 4, 4);
  memcpy(&envc, p + 8, 4);
  static char* argv[kMaxStrings + 1];
  static char* envp[kMaxStrings + 1];
  static char* tail[2];  // workdir, user
  if (argc == 0 || argc > kMaxStrings || envc > kMaxStrings - argc) return;
  size_t pos = 12;
  for (uint32_t i = 0; i < argc + envc + 2; i++) {
    const void* nul = pos < len ? memchr(p + pos, '\0', len - pos) : nullptr;
    if (!nul) return;  // unterminated: a malformed request, dropped
    char* str = const_cast<char*>(p + pos);
    if (i < argc) argv[i] = str;
    else if (i < argc + envc) envp[i - argc] = str;
    else tail[i - argc - envc] = str;
    pos = static_cast<size_t>(static_cast<const char*>(nul) - p) + 1;
  }
  argv[argc] = nullptr;
  envp[envc] = nullptr;

  Session* s = nullptr;
  for (uint32_t i = 1; i <= VIC_EXEC_MAX_SESSIONS && !s; i++)
    if (!sessions[i].used) s = &sessions[i];
  uint32_t failed = 126;
  if (!s) {  // too many at once: the host hears an exit, not silence
    send_frame(VIC_EXEC_EXIT, id, &failed, sizeof failed);
    return;
  }
  const bool tty = flags & VIC_EXEC_TTY, open_stdin = flags & VIC_EXEC_OPEN_STDIN;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  int master = -1;
  bool ok;
  if (tty) {
    master = open_tty_master();
    ok = master >= 0;
  } else {
    ok = pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0 && (!open_stdin || pipe2(in, O_CLOEXEC) == 0);
  }
  pid_t pid = ok ? fork() : -1;
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setsid();
    if (tty) {
      become_tty_session(master);
    } else {
      int null = open("/dev/null", O_RDWR);
      dup2(open_stdin ? in[0] : null, 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
    }
    if (envc > 0) environ = envp;
    if (in_image) become_user_in(tail[1], tail[0]);
    execvp(argv[0], argv);
    int e = errno;
    if (in_image) exec_failed_in_image(argv, e);
    dprintf(2, "vic-init: cannot run %s: %s\n", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  close_fd(in[0]);  // the child's ends
  close_fd(out[1]);
  close_fd(err[1]);
  if (pid < 0) {
    close_fd(in[1]);
    close_fd(out[0]);
    close_fd(err[0]);
    close_fd(master);
    send_frame(VIC_EXEC_EXIT, id, &failed, sizeof failed);
    return;
  }
  *s = Session{};
  s->used = true;
  s->id = id;
  s->pid = pid;
  s->tty = tty;
  s->in = tty ? (open_stdin ? dup(master) : -1) : in[1];
  s->out = tty ? master : out[0];
  s->err = tty ? -1 : err[0];
  const int ours[3] = {s->in, s->out, s->err};
  for (int fd : ours)
    if (fd >= 0) {
      set_nonblock(fd);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  uint32_t gpid = static_cast<uint32_t>(pid);
  send_frame(VIC_EXEC_STARTED, id, &gpid, sizeof gpid);
}

void handle_frame(const vic_exec_frame& h, const char* p) {
  if (h.type == VIC_EXEC_START) return start_session(h.id, p, h.len);
  Session* s = find(h.id);
  if (!s) return;  // ended meanwhile: late input is dropped
  switch (h.type) {
    case VIC_EXEC_STDIN:
      if (s->in < 0 || s->eof_asked) return;
      if (char* grown = static_cast<char*>(realloc(s->pending, s->pending_len + h.len))) {
        s->pending = grown;
        memcpy(s->pending + s->pending_len, p, h.len);
        s->pending_len += h.len;
      }
      flush_input(*s);
      break;
    case VIC_EXEC_STDIN_EOF:
      s->eof_asked = true;
      flush_input(*s);
      break;
    case VIC_EXEC_SIGNAL: {
      uint32_t sig;
      if (h.len != 4) return;
      memcpy(&sig, p, 4);
      if (sig > 0 && sig < 65) kill(-s->pid, static_cast<int>(sig));
      break;
    }
    case VIC_EXEC_RESIZE: {
      uint16_t rc[2];
      if (h.len != 4 || !s->tty) return;
      memcpy(rc, p, 4);
      winsize ws{rc[0], rc[1], 0, 0};
      ioctl(s->out, TIOCSWINSZ, &ws);
      break;
    }
    default: break;  // unknown: dropped
  }
}

// Frames from the exec-in port: it delivers bytes, not frames, so gather.
// Returns false when the port is gone.
bool read_exec_in(int fd) {
  static char buf[kHeader + VIC_EXEC_MAX_PAYLOAD];
  static size_t have = 0;
  ssize_t n = read(fd, buf + have, sizeof buf - have);
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) {  // the host closed its side (it never does): stop polling a hung-up port
    diag("vic-init: exec channel closed by the host");
    return false;
  }
  have += static_cast<size_t>(n);
  size_t pos = 0;
  while (have - pos >= kHeader) {
    vic_exec_frame h;
    memcpy(&h, buf + pos, kHeader);
    if (h.len > VIC_EXEC_MAX_PAYLOAD) {  // a broken stream: resynchronising is guesswork
      diag("vic-init: exec channel: frame of %u bytes, channel closed", h.len);
      return false;
    }
    if (have - pos < kHeader + h.len) break;
    handle_frame(h, buf + pos + kHeader);
    pos += kHeader + h.len;
  }
  memmove(buf, buf + pos, have - pos);
  have -= pos;
  return true;
}

}  // namespace

int open_tty_master() {
  if (access("/dev/pts/ptmx", F_OK) != 0) mount_fs("devpts", "/dev/pts", "devpts", 0, "newinstance,ptmxmode=0666");
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master >= 0 && (grantpt(master) != 0 || unlockpt(master) != 0)) close_fd(master);
  return master;
}

void become_tty_session(int master) {
  const char* name = ptsname(master);
  int slave = name ? open(name, O_RDWR) : -1;
  if (slave < 0) _exit(126);
  ioctl(slave, TIOCSCTTY, 0);
  for (int fd = 0; fd < 3; fd++) dup2(slave, fd);
  if (slave > 2) close(slave);
}

int wait_for_command(pid_t child, int exec_in, int exec_out, bool image_root, CommandTty tty) {
  exec_out_fd = exec_out;
  in_image = image_root;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (exec_in >= 0) set_nonblock(exec_in);
  Session& term = sessions[0];  // the command's terminal, when it has one (id 0: never a host's)
  if (tty.master >= 0) {
    term = Session{};
    term.used = true;
    term.pid = child;
    term.tty = true;
    term.in = dup(tty.master);
    term.out = tty.master;
    term.raw_in = tty.in;
    term.raw_out = tty.out;
    set_nonblock(term.in);
    set_nonblock(term.out);
  }
  bool check_children = true;  // one sweep first: the command may have exited before the block
  for (;;) {
    if (check_children || sfd < 0) {
      check_children = false;
      for (;;) {  // PID 1 inherits every orphan: reap them all
        int st;
        pid_t pid = waitpid(-1, &st, sfd < 0 ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) {
          if (errno == ECHILD) return 0xff00;  // cannot happen before ours exits: exit 255
          break;
        }
        if (pid == 0) break;
        if (pid == child) {
          if (tty.master >= 0 && term.used) {  // what it wrote last is still in the terminal
            if (term.out >= 0) forward_output(term, term.out, VIC_EXEC_STDOUT);
            close_fd(term.in);
            close_fd(term.out);
            term = Session{};
          }
          return st;
        }
        for (auto& s : sessions)
          if (s.used && s.pid == pid && &s != &term) {
            s.exited = true;
            s.status = st;
            finish_if_exited(s);
          }
      }
    }
    pollfd fds[2 + 4 * (VIC_EXEC_MAX_SESSIONS + 1)];
    Session* owner[2 + 4 * (VIC_EXEC_MAX_SESSIONS + 1)] = {};
    nfds_t n = 0;
    fds[n++] = {sfd, POLLIN, 0};
    const bool blocked = input_blocked();
    if (exec_in >= 0) fds[n++] = {blocked ? -1 : exec_in, POLLIN, 0};
    for (auto& s : sessions) {
      if (!s.used) continue;
      if (s.out >= 0) owner[n] = &s, fds[n++] = {s.out, POLLIN, 0};
      if (s.err >= 0) owner[n] = &s, fds[n++] = {s.err, POLLIN, 0};
      if (s.pending_len > 0 && s.in >= 0) owner[n] = &s, fds[n++] = {s.in, POLLOUT, 0};
      if (s.raw_in >= 0 && s.pending_len < kMaxPendingInput) owner[n] = &s, fds[n++] = {s.raw_in, POLLIN, 0};
    }
    if (poll(fds, n, -1) < 0) {
      if (errno != EINTR) return 0xff00;
      continue;
    }
    if (fds[0].revents) {
      signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
      }
      check_children = true;
    }
    if (exec_in >= 0 && fds[1].revents & (POLLIN | POLLERR)) {
      if (!read_exec_in(exec_in)) close_fd(exec_in);
    }
    for (nfds_t i = 0; i < n; i++) {
      Session* s = owner[i];
      if (!s || !s->used || !fds[i].revents) continue;
      if (fds[i].events == POLLOUT) {
        flush_input(*s);
      } else if (fds[i].fd == s->raw_in) {
        read_raw_input(*s);
      } else if (fds[i].fd == s->out) {
        forward_output(*s, s->out, VIC_EXEC_STDOUT);
      } else if (fds[i].fd == s->err) {
        forward_output(*s, s->err, VIC_EXEC_STDERR);
      }
    }
  }
}
