#include "vmm/seccomp/seccomp.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "vmm/seccomp/allow_lists.h"
#include "vmm/unique_fd.h"

namespace vicvmm::seccomp {

namespace {

constexpr size_t kKinds = 8;
constexpr int kSysSeccomp = 1;  // si_code of a SIGSYS from a filter (SYS_SECCOMP)
constexpr int kMaxNamedSyscall = 512;  // x86-64 numbers stay below this
constexpr uint64_t kKvmIoctlType = 0xAE;
constexpr uint64_t kTtyIoctlType = 0x54;  // 'T': TCGETS, FIONREAD, FIONBIO, FIOCLEX

// The SIGSYS handler may not allocate: syscall names are resolved ahead.
char g_names[kMaxNamedSyscall][32];
std::once_flag g_names_once;

// What the calling thread was confined as (read by the SIGSYS handler:
// initial-exec TLS needs no allocation on first access).
thread_local const char* t_kind __attribute__((tls_model("initial-exec"))) = nullptr;

std::atomic<int> g_enabled{-1};  // -1: not decided yet (read the environment)
// VICVMM_SECCOMP=log: a call off the list is reported and fails with
// ENOSYS instead of stopping the process, to find what a list lacks.
// (SECCOMP_RET_LOG would let it through, but it logs through audit, which
// many kernels, ours included, do not print.)
std::atomic<bool> g_log_only{false};
int g_report_fd = STDERR_FILENO;  // VICVMM_SECCOMP=log:FILE appends the reports to FILE

std::mutex g_mu;
std::array<std::optional<std::vector<sock_filter>>, kKinds> g_compiled;

void append(char* buf, size_t cap, size_t& len, const char* s) {
  while (*s && len + 1 < cap) buf[len++] = *s++;
}

void append_number(char* buf, size_t cap, size_t& len, long v) {
  char digits[24];
  int n = 0;
  unsigned long u = v < 0 ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    digits[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u && n < 23);
  if (v < 0 && len + 1 < cap) buf[len++] = '-';
  while (n > 0 && len + 1 < cap) buf[len++] = digits[--n];
}

// Async-signal-safe: fixed buffers, write(2), then death by SIGSYS.
void on_sigsys(int, siginfo_t* info, void* context) {
  char msg[320];
  size_t len = 0;
  if (info->si_code == kSysSeccomp) {
    int nr = info->si_syscall;
    append(msg, sizeof msg, len, "vicvmm: seccomp: the ");
    append(msg, sizeof msg, len, t_kind ? t_kind : "(unnamed, started by a confined one)");
    append(msg, sizeof msg, len, " thread called ");
    if (nr >= 0 && nr < kMaxNamedSyscall && g_names[nr][0]) {
      append(msg, sizeof msg, len, g_names[nr]);
    } else {
      append(msg, sizeof msg, len, "system call");
    }
    append(msg, sizeof msg, len, " (");
    append_number(msg, sizeof msg, len, nr);
    if (g_log_only) {
      append(msg, sizeof msg, len, "), which its allow-list forbids: failed with ENOSYS (VICVMM_SECCOMP=log)\n");
      ssize_t w = ::write(g_report_fd, msg, len);
      (void)w;
      static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
      return;
    }
    append(msg, sizeof msg, len,
           "), which its allow-list forbids: stopping the process (VICVMM_SECCOMP=off or --seccomp=off to debug)\n");
  } else {
    append(msg, sizeof msg, len, "vicvmm: SIGSYS not from seccomp: stopping the process\n");
  }
  ssize_t w = ::write(STDERR_FILENO, msg, len);
  (void)w;
  // SIGSYS is blocked while its handler runs; a second trapped call makes
  // the kernel deliver it with the default action (terminate, core). No
  // allow-list has reboot; with these arguments it would only fail EINVAL.
  ::syscall(SYS_reboot, 0, 0, 0, nullptr);
  _exit(128 + SIGSYS);  // not reached under a filter
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, nullptr);
  });
}

void resolve_names() {
  std::call_once(g_names_once, [] {
    for (int nr = 0; nr < kMaxNamedSyscall; ++nr) {
      char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
      if (!name) continue;
      std::strncpy(g_names[nr], name, sizeof g_names[nr] - 1);
      std::free(name);
    }
  });
}

Result<std::vector<sock_filter>> compile(ThreadKind kind) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (!ctx) return err("seccomp: cannot make a filter for the {} thread", kind_name(kind));
  struct Release {
    scmp_filter_ctx c;
    ~Release() { seccomp_release(c); }
  } release{ctx};

  std::set<std::string> seen;
  auto add = [&](const Allowed& a) -> Result<> {
    if (!seen.insert(a.syscall).second) return {};
    int nr = seccomp_syscall_resolve_name(a.syscall);
    if (nr == __NR_SCMP_ERROR)
      return err("seccomp: the {} allow-list names '{}', which this libseccomp does not know", kind_name(kind),
                 a.syscall);
    int rc;
    if (std::strcmp(a.syscall, "ioctl") == 0) {
      uint64_t type = ioctl_class(kind) == IoctlClass::Kvm ? kKvmIoctlType : kTtyIoctlType;
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, type << 8));
    } else {
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (rc < 0 && rc != -EEXIST)
      return err("seccomp: adding {} to the {} allow-list: {}", a.syscall, kind_name(kind), std::strerror(-rc));
    return {};
  };
  for (const Allowed& a : base_list()) VIC_TRY(add(a));
  for (const Allowed& a : kind_list(kind)) VIC_TRY(add(a));

  // libseccomp 2.5 exports BPF only to an fd: through a memfd, read back.
  UniqueFd mem(memfd_create("vicvmm-seccomp", MFD_CLOEXEC));
  if (!mem) return sys_err("seccomp: memfd for the {} filter", kind_name(kind));
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc < 0)
    return err("seccomp: exporting the {} filter: {}", kind_name(kind), std::strerror(-rc));
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
    return err("seccomp: the {} filter has a bad size ({} bytes)", kind_name(kind), static_cast<long long>(size));
  std::vector<sock_filter> prog(static_cast<size_t>(size) / sizeof(sock_filter));
  if (pread(mem.get(), prog.data(), static_cast<size_t>(size), 0) != size)
    return sys_err("seccomp: reading the {} filter back", kind_name(kind));
  return prog;
}

}  // namespace

const char* kind_name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::Vcpu: return "vcpu";
    case ThreadKind::Io: return "io";
    case ThreadKind::Net: return "net";
    case ThreadKind::PoolBuilder: return "pool-builder";
    case ThreadKind::PoolReaper: return "pool-reaper";
    case ThreadKind::StdinPump: return "stdin-pump";
    case ThreadKind::Exec: return "exec";
    case ThreadKind::Api: return "api";
  }
  return "unknown";
}

void set_enabled(bool on) { g_enabled.store(on ? 1 : 0); }

bool enabled() {
  int v = g_enabled.load();
  if (v < 0) {
    const char* env = std::getenv("VICVMM_SECCOMP");
    bool off = env && (std::strcmp(env, "off") == 0 || std::strcmp(env, "0") == 0);
    if (env && std::strncmp(env, "log", 3) == 0) {
      g_log_only = true;
      if (env[3] == ':' && env[4]) {  // opened now: the handler cannot open files
        int fd = ::open(env + 4, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) g_report_fd = fd;
      }
    }
    int expected = -1;
    g_enabled.compare_exchange_strong(expected, off ? 0 : 1);
    v = g_enabled.load();
  }
  return v == 1;
}

const char* current_kind_name() { return t_kind; }

void note_inherited(ThreadKind kind) {
  // No prctl(PR_SET_NAME) here (not on the lists): a new thread has its
  // creator's name already.
  if (enabled()) t_kind = kind_name(kind);
}

// Thread names (comm) show the kind in ps, top and the kernel's seccomp
// log. serve's API threads keep theirs: its main thread is one of them.
static const char* thread_name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::Vcpu: return "vicvmm-vcpu";
    case ThreadKind::Io: return "vicvmm-io";
    case ThreadKind::Net: return "vicvmm-net";
    case ThreadKind::PoolBuilder: return "vicvmm-builder";
    case ThreadKind::PoolReaper: return "vicvmm-reaper";
    case ThreadKind::StdinPump: return "vicvmm-stdin";
    case ThreadKind::Exec: return "vicvmm-exec";
    case ThreadKind::Api: return nullptr;
  }
  return nullptr;
}

Result<> confine_current_thread(ThreadKind kind) {
  const char* name = kind_name(kind);
  if (t_kind == name) return {};
  if (const char* comm = thread_name(kind)) prctl(PR_SET_NAME, comm, 0, 0, 0);
  if (!enabled()) return {};
  resolve_names();
  install_handler();
  const std::vector<sock_filter>* prog;
  {
    std::lock_guard lock(g_mu);
    auto& slot = g_compiled[static_cast<size_t>(kind)];
    if (!slot) {
      VIC_ASSIGN(auto compiled, compile(kind));
      slot = std::move(compiled);
    }
    prog = &*slot;  // never replaced once compiled
  }
  // A thread's first malloc picks its arena, and past eight arenas glibc
  // counts CPUs by opening /sys/devices/system/cpu/online: done here,
  // before the filter, not on the first allocation under it.
  void* volatile first = std::malloc(1);  // volatile: the pair must not be optimised away
  std::free(first);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return sys_err("seccomp: no_new_privs for the {} thread", name);
  sock_fprog fprog{static_cast<unsigned short>(prog->size()), const_cast<sock_filter*>(prog->data())};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
    return sys_err("seccomp: installing the {} thread's filter (VICVMM_SECCOMP=off runs without)", name);
  t_kind = name;
  return {};
}

Result<std::thread> start_confined_thread(ThreadKind kind, std::function<void()> body) {
  std::promise<Result<>> confined;
  auto ready = confined.get_future();
  std::thread t([kind, &confined, body = std::move(body)] {
    auto c = confine_current_thread(kind);
    bool ok = c.has_value();
    confined.set_value(std::move(c));  // `confined` is gone once the caller has this
    if (ok) body();
  });
  if (auto c = ready.get(); !c) {
    t.join();
    return tl::unexpected(c.error());
  }
  return t;
}

bool allows(ThreadKind kind, std::string_view syscall_name) {
  for (const Allowed& a : base_list())
    if (syscall_name == a.syscall) return true;
  for (const Allowed& a : kind_list(kind))
    if (syscall_name == a.syscall) return true;
  return false;
}

}  // namespace vicvmm::seccomp
