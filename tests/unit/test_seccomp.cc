// The per-thread allow-lists: a confined thread that makes a forbidden call
// is stopped (the process dies of SIGSYS) and reported by name; allowed
// calls keep working; other threads are not confined.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <thread>

#include "vmm/seccomp/allow_lists.h"
#include "vmm/seccomp/seccomp.h"

using namespace vicvmm;

namespace {

struct ChildOutcome {
  int status = 0;
  std::string err;  // what the child wrote on stderr
};

// Runs `body` in a forked child with stderr captured; the child exits 0
// when body returns.
ChildOutcome in_child(const std::function<void()>& body) {
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(p[1], STDERR_FILENO);
    body();
    _exit(0);
  }
  close(p[1]);
  ChildOutcome out;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.err.append(buf, static_cast<size_t>(n));
  close(p[0]);
  REQUIRE(waitpid(pid, &out.status, 0) == pid);
  return out;
}

}  // namespace

TEST_CASE("seccomp: a vCPU thread calling socket() is stopped by SIGSYS and the call is named", "[seccomp]") {
  seccomp::set_enabled(true);
  auto out = in_child([] {
    std::thread t([] {
      if (!seccomp::confine_current_thread(seccomp::ThreadKind::Vcpu)) _exit(3);
      // Allowed calls still work under the filter.
      if (::write(STDERR_FILENO, "", 0) != 0) _exit(4);
      ::socket(AF_INET, SOCK_STREAM, 0);  // forbidden: never returns
      _exit(5);
    });
    t.join();
    _exit(6);
  });
  CAPTURE(out.err);
  REQUIRE(WIFSIGNALED(out.status));
  CHECK(WTERMSIG(out.status) == SIGSYS);
  CHECK(out.err.find("seccomp: the vcpu thread called socket (41)") != std::string::npos);
  CHECK(out.err.find("forbids") != std::string::npos);
}

TEST_CASE("seccomp: an I/O thread may not exec, open files or create sockets", "[seccomp]") {
  seccomp::set_enabled(true);
  struct Case {
    const char* name;
    std::function<void()> call;
  };
  const Case cases[] = {
      {"execve", [] { char* argv[] = {nullptr}; ::execve("/bin/true", argv, argv); }},
      {"openat", [] { ::open("/etc/passwd", O_RDONLY); }},
      {"ptrace", [] { ::syscall(SYS_ptrace, 0, 0, 0, 0); }},
      {"socket", [] { ::socket(AF_UNIX, SOCK_STREAM, 0); }},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    if (seccomp::allows(seccomp::ThreadKind::Io, c.name)) continue;  // sanitized builds let reports open files
    auto out = in_child([&] {
      std::thread t([&] {
        if (!seccomp::confine_current_thread(seccomp::ThreadKind::Io)) _exit(3);
        c.call();
        _exit(5);
      });
      t.join();
    });
    CAPTURE(out.err);
    REQUIRE(WIFSIGNALED(out.status));
    CHECK(WTERMSIG(out.status) == SIGSYS);
    CHECK(out.err.find(std::string("the io thread called ") + c.name) != std::string::npos);
  }
}

TEST_CASE("seccomp: only KVM ioctls pass a vCPU thread's filter", "[seccomp]") {
  seccomp::set_enabled(true);
  auto out = in_child([] {
    std::thread t([] {
      if (!seccomp::confine_current_thread(seccomp::ThreadKind::Vcpu)) _exit(3);
      // A KVM ioctl on a non-KVM fd passes the filter and fails ENOTTY.
      errno = 0;
      if (::ioctl(STDERR_FILENO, 0xAE03 /* KVM_CHECK_EXTENSION */, 0) != -1 || errno != ENOTTY) _exit(4);
      ::ioctl(STDERR_FILENO, 0x5412 /* TIOCSTI */, "x");  // forbidden
      _exit(5);
    });
    t.join();
  });
  CAPTURE(out.err);
  REQUIRE(WIFSIGNALED(out.status));
  CHECK(WTERMSIG(out.status) == SIGSYS);
  CHECK(out.err.find("the vcpu thread called ioctl") != std::string::npos);
}

TEST_CASE("seccomp: the confining thread's siblings and the process stay unconfined", "[seccomp]") {
  seccomp::set_enabled(true);
  auto out = in_child([] {
    std::thread t([] {
      if (!seccomp::confine_current_thread(seccomp::ThreadKind::Vcpu)) _exit(3);
      if (std::string(seccomp::current_kind_name()) != "vcpu") _exit(4);
    });
    t.join();
    if (seccomp::current_kind_name() != nullptr) _exit(7);
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);  // the main thread is not confined
    if (s < 0) _exit(8);
    close(s);
  });
  CAPTURE(out.err);
  REQUIRE(WIFEXITED(out.status));
  CHECK(WEXITSTATUS(out.status) == 0);
}

TEST_CASE("seccomp: off means no filter", "[seccomp]") {
  auto out = in_child([] {
    seccomp::set_enabled(false);
    std::thread t([] {
      if (!seccomp::confine_current_thread(seccomp::ThreadKind::Vcpu)) _exit(3);
      int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (s < 0) _exit(4);
      close(s);
    });
    t.join();
  });
  CHECK(WIFEXITED(out.status));
  CHECK(WEXITSTATUS(out.status) == 0);
  seccomp::set_enabled(true);
}

TEST_CASE("seccomp: every kind compiles and every entry says why", "[seccomp]") {
  using K = seccomp::ThreadKind;
  for (K k : {K::Vcpu, K::Io, K::Net, K::PoolBuilder, K::PoolReaper, K::StdinPump, K::Exec, K::Api}) {
    CAPTURE(seccomp::kind_name(k));
    for (const auto& a : seccomp::kind_list(k)) CHECK(std::string(a.why).size() > 3);
    auto out = in_child([k] {
      seccomp::set_enabled(true);
      std::thread t([k] {
        if (auto r = seccomp::confine_current_thread(k); !r) {
          ::write(STDERR_FILENO, r.error().message.data(), r.error().message.size());
          _exit(3);
        }
      });
      t.join();
    });
    CAPTURE(out.err);
    CHECK(WIFEXITED(out.status));
    CHECK(WEXITSTATUS(out.status) == 0);
  }
  CHECK(seccomp::allows(K::Vcpu, "ioctl"));
  CHECK_FALSE(seccomp::allows(K::Vcpu, "execve"));
  CHECK_FALSE(seccomp::allows(K::Io, "execve"));
  CHECK(seccomp::allows(K::Net, "socket"));
#if !defined(__SANITIZE_ADDRESS__)  // sanitized builds allow LeakSanitizer's ptrace tracer everywhere
  CHECK_FALSE(seccomp::allows(K::Api, "ptrace"));
#endif
  CHECK_FALSE(seccomp::allows(K::Api, "mount"));
  CHECK_FALSE(seccomp::allows(K::Vcpu, "execve"));
}
