// vic-init: PID 1 of a vicvmm guest.
//
// Reads the command from the mailbox page the VMM filled in (guest/abi/
// vicvmm_abi.h), rings the doorbell READY, runs the command, rings EXIT with
// its status and powers off. Everything here is chosen to keep guest-KERNEL
// work small, because on our nested "PVM" hosts kernel code is emulated
// (~9000x slower) while user code runs natively (see shared/HOST.md): the
// mailbox is read and the doorbell written from user mode through /dev/mem
// mappings, with no system call per access.
//
// Static binary, no exceptions, no iostreams (keeps the initramfs small: it
// is unpacked by the emulated kernel at ~0.75 s per MB).

#include "guest/abi/vicvmm_abi.h"
#include "guest/init/vic-init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <linux/random.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/io.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>
#include <stdint.h>

namespace {
bool quiet = false;  // VIC_MB_QUIET: no diagnostics of our own
}  // namespace

void diag(const char* fmt, ...) {
  if (quiet) return;
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > static_cast<int>(sizeof buf) - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  // One write() so the line is not interleaved with the command's output.
  ssize_t r = write(STDERR_FILENO, buf, static_cast<size_t>(n));
  (void)r;
}

namespace {

// ---- doorbell -----------------------------------------------------------------
// MMIO by default: a store to a page with no memslot exits to the VMM. The
// port (after ioperm) is the alternative the VMM can ask for; on PVM hosts a
// user-mode `out` costs ~25 us versus an MMIO exit, so it is opt-in.
struct Doorbell {
  volatile uint32_t* mmio = nullptr;
  bool port = false;

  bool use_port() {
    if (ioperm(VIC_DOORBELL_PORT, 4, 1) != 0) {
      diag("vic-init: ioperm(0x%x): %s", VIC_DOORBELL_PORT, strerror(errno));
      return false;
    }
    port = true;
    return true;
  }
  bool use_mmio(int memfd) {
    void* p = mmap(nullptr, 4096, PROT_WRITE, MAP_SHARED, memfd, VIC_DOORBELL_MMIO_GPA);
    if (p == MAP_FAILED) {
      diag("vic-init: mmap doorbell: %s", strerror(errno));
      return false;
    }
    mmio = static_cast<volatile uint32_t*>(p);
    return true;
  }
  void ring(uint32_t event, uint32_t arg) {
    uint32_t v = VIC_DOORBELL(event, arg);
    if (mmio)
      *mmio = v;  // one 32-bit store; volatile keeps it a single access
    else if (port)
      outl(v, VIC_DOORBELL_PORT);
  }
};

Doorbell bell;

// ---- mailbox --------------------------------------------------------------------
vic_mailbox mb;  // private copy: validated once, immune to later VMM writes
char ext_strings[VIC_MAILBOX_EXT_SIZE];  // private copy of the extension area
const char* strings[kMaxStrings + 3];  // argv..., envp..., hostname, workdir, user
const volatile void* ext_area = nullptr;  // the extension area, mapped when needed

// Copy shared memory with 64-bit volatile loads (the compiler may not turn
// them into a memcpy that could read bytes twice or in odd widths), then
// validate only the copy, so the VMM cannot change it under us.
void copy_shared(void* dst, const volatile void* src, size_t len) {
  auto* s = static_cast<const volatile uint64_t*>(src);
  auto* d = static_cast<uint64_t*>(dst);
  for (size_t i = 0; i < (len + 7) / 8; i++) d[i] = s[i];
}

void copy_mailbox(const volatile void* page) {
  static uint64_t raw[VIC_MAILBOX_SIZE / 8];
  copy_shared(raw, page, VIC_MAILBOX_SIZE);
  memcpy(&mb, raw, sizeof mb);
  // The strings outgrew the page: they are in the extension area.
  if ((mb.flags & VIC_MB_EXT_STRINGS) && ext_area && mb.strings_len <= sizeof ext_strings)
    copy_shared(ext_strings, ext_area, (mb.strings_len + 7) & ~7u);
}

// Returns 0 or an errno describing what is wrong.
int validate_mailbox() {
  if (mb.magic != VIC_MAILBOX_MAGIC || mb.version != VIC_MAILBOX_VERSION) return EPROTO;
  const bool in_ext = mb.flags & VIC_MB_EXT_STRINGS;
  if (in_ext && !ext_area) return ENXIO;
  const char* base = in_ext ? ext_strings : mb.strings;
  if (mb.strings_len > (in_ext ? sizeof ext_strings : sizeof mb.strings)) return EINVAL;
  if (mb.argc > kMaxStrings || mb.envc > kMaxStrings - mb.argc) return E2BIG;
  uint32_t pos = 0;
  uint32_t required = mb.argc + mb.envc;
  for (uint32_t i = 0; i < required + 3; i++) {
    if (i >= required && pos == mb.strings_len) {  // hostname, workdir, user may be omitted
      strings[i] = "";
      continue;
    }
    const void* nul = pos < mb.strings_len ? memchr(base + pos, '\0', mb.strings_len - pos) : nullptr;
    if (nul == nullptr) return EINVAL;  // unterminated
    strings[i] = base + pos;
    pos = static_cast<uint32_t>(static_cast<const char*>(nul) - base) + 1;
  }
  return 0;
}

}  // namespace

// ---- helpers --------------------------------------------------------------------
void mount_fs(const char* src, const char* dir, const char* type, unsigned long flags,
              const char* opts) {
  mkdir(dir, 0755);  // EEXIST is fine
  if (mount(src, dir, type, flags, opts) != 0 && errno != EBUSY)
    diag("vic-init: mount %s on %s: %s", type, dir, strerror(errno));
}

namespace {

// The VMM normally stops the VM at the EXIT/ERROR doorbell, so this is a
// fallback. PID 1 must never return or exit (the kernel would panic).
[[noreturn]] void power_off() {
  reboot(RB_POWER_OFF);
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

[[noreturn]] void fail(int err, const char* what) {
  diag("vic-init: %s: %s", what, strerror(err));
  bell.ring(VIC_EV_ERROR, static_cast<uint32_t>(err));
  power_off();
}

// ---- template mode ----------------------------------------------------------------
// Parks this booted guest for the clone engine, then becomes one clone.
// Everything between the VMM writing the mailbox and "personality read" runs
// in user mode: no system call, no exit but the READY doorbell.
void await_personality(const void* page) {
  auto* live = static_cast<const volatile vic_mailbox*>(page);
  const uint64_t parked = live->generation;
  // Clones restore the template's kvm-clock (KVM_SET_CLOCK) but not always
  // its TSC (on nested PVM hosts user-mode rdtsc cannot be offset): with a
  // TSC clocksource a clone's time would jump by the template's age and the
  // kernel would spend emulated time catching up. Boot ran on the cheaper
  // TSC; from here on, follow kvm-clock.
  int cs = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_WRONLY | O_CLOEXEC);
  if (cs < 0 || write(cs, "kvm-clock\n", 10) != 10) diag("vic-init: selecting kvm-clock: %s", strerror(errno));
  if (cs >= 0) close(cs);
  bell.ring(VIC_EV_TEMPLATE, 0);  // the VMM captures the VM at this store
  // Clones resume here with a newer generation already written, so this
  // loop only spins if a VMM resumes the template itself.
  while (live->generation == parked) __builtin_ia32_pause();
  copy_mailbox(page);
  if (int err = validate_mailbox(); err != 0) fail(err, "bad clone mailbox");
  bell.ring(VIC_EV_READY, 0);

  // Clones share the template's RNG state: mix in this clone's seed and
  // credit it, so no two clones produce the same random numbers.
  struct {
    int entropy_count;
    int buf_size;
    uint64_t buf[4];
  } entropy = {256, sizeof(uint64_t) * 4, {mb.seed[0], mb.seed[1], mb.seed[2], mb.seed[3]}};
  int rnd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  // Adding entropy alone leaves the running ChaCha state untouched until its
  // next timed reseed: force one so the very next random bytes differ.
  if (rnd < 0 || ioctl(rnd, RNDADDENTROPY, &entropy) != 0 || ioctl(rnd, RNDRESEEDCRNG) != 0)
    diag("vic-init: reseeding RNG: %s", strerror(errno));
  if (rnd >= 0) close(rnd);
  // The template's clock stopped when it was captured.
  if (mb.wallclock_ns != 0) {
    timespec ts = {static_cast<time_t>(mb.wallclock_ns / 1000000000ull),
                   static_cast<long>(mb.wallclock_ns % 1000000000ull)};
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) diag("vic-init: setting the clock: %s", strerror(errno));
  }
}

}  // namespace

int chanbench_main(int argc, char** argv);  // chanbench.cc

// The virtio-console ports for the command's stdio (VIC_MB_STDIO_PORTS),
// and the exec channel's two (guest/abi/vicvmm_abi.h): they appear shortly
// after the driver's handshake with the VMM, so wait for them (a few ms),
// then keep them open: a template's clones inherit them. -1 where a port
// never showed up (the console is used instead; no exec).
struct StdioPorts {
  int fd[5] = {-1, -1, -1, -1, -1};
};

// Static configuration for the VMM's user-mode network (VIC_MB_NET), by
// ioctl: no DHCP client, no netlink library.
void set_if(int s, const char* name, const char* addr, const char* mask) {
  ifreq ifr{};
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  if (addr) {
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin->sin_addr);
    if (ioctl(s, SIOCSIFADDR, &ifr) != 0) diag("vic-init: %s address: %s", name, strerror(errno));
    inet_pton(AF_INET, mask, &sin->sin_addr);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0) diag("vic-init: %s netmask: %s", name, strerror(errno));
  }
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
    diag("vic-init: %s: %s", name, strerror(errno));
    return;
  }
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) diag("vic-init: %s up: %s", name, strerror(errno));
}

void configure_network() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    diag("vic-init: socket: %s", strerror(errno));
    return;
  }
  set_if(s, "lo", nullptr, nullptr);
  set_if(s, "eth0", "10.0.2.15", "255.255.255.0");
  rtentry rt{};
  auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
  auto* gw = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
  auto* mask = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
  dst->sin_family = gw->sin_family = mask->sin_family = AF_INET;
  inet_pton(AF_INET, "10.0.2.2", &gw->sin_addr);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  if (ioctl(s, SIOCADDRT, &rt) != 0) diag("vic-init: default route: %s", strerror(errno));
  close(s);
  mkdir("/etc", 0755);
  int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    static const char kResolv[] = "nameserver 10.0.2.3\n";
    ssize_t n = write(fd, kResolv, sizeof kResolv - 1);
    (void)n;
    close(fd);
  }
}

StdioPorts open_stdio_ports() {
  StdioPorts p;
  static const char* const kPaths[5] = {"/dev/vport0p0", "/dev/vport0p1", "/dev/vport0p2", "/dev/vport0p3",
                                        "/dev/vport0p4"};
  for (int i = 0; i < 5; i++) {
    // The exec ports come with the others, so wait for them only briefly.
    for (int tries = 0; tries < (i < 3 ? 2500 : 50); tries++) {  // up to 5 s (0.1 s)
      p.fd[i] = open(kPaths[i], (i == 0 || i == 3 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
      if (p.fd[i] >= 0 || errno != ENOENT) break;
      timespec ts{0, 2 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    if (p.fd[i] < 0) diag("vic-init: %s: %s (stdio stays on the console)", kPaths[i], strerror(errno));
  }
  return p;
}

// ---- container image root (VIC_MB_IMAGE_ROOT) ---------------------------------------
// /dev/vda holds the image as EROFS: read-only lower layer of an overlay
// whose upper layer is a tmpfs, so the container's writes stay in its own
// VM's memory and vanish with it. Then the usual mounts inside, and the
// overlay becomes "/" (switch_root's move + chroot: the initramfs cannot be
// pivot_root'ed away, and PID 1 keeps running from it).
int switch_to_image_root() {
  static const char kDisk[] = "/dev/vda";
  for (int tries = 0; tries < 2500 && access(kDisk, F_OK) != 0; tries++) {  // up to 5 s
    timespec ts{0, 2 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  mkdir("/vic", 0700);
  mkdir("/vic/lower", 0755);
  if (mount(kDisk, "/vic/lower", "erofs", MS_RDONLY | MS_NODEV, nullptr) != 0) return errno;
  mkdir("/vic/rw", 0755);
  if (mount("tmpfs", "/vic/rw", "tmpfs", 0, "mode=0755") != 0) return errno;
  mkdir("/vic/rw/upper", 0755);
  mkdir("/vic/rw/work", 0755);
  mkdir("/vic/root", 0755);
  if (mount("overlay", "/vic/root", "overlay", 0,
            "lowerdir=/vic/lower,upperdir=/vic/rw/upper,workdir=/vic/rw/work") != 0)
    return errno;
  mount_fs("proc", "/vic/root/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mount_fs("sysfs", "/vic/root/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mount_fs("devtmpfs", "/vic/root/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_fs("devpts", "/vic/root/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  mount_fs("tmpfs", "/vic/root/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_fs("tmpfs", "/vic/root/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  symlink("/proc/self/fd", "/vic/root/dev/fd");
  symlink("/proc/self/fd/0", "/vic/root/dev/stdin");
  symlink("/proc/self/fd/1", "/vic/root/dev/stdout");
  symlink("/proc/self/fd/2", "/vic/root/dev/stderr");
  if (chdir("/vic/root") != 0) return errno;
  if (mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return errno;
  if (chroot(".") != 0) return errno;
  if (chdir("/") != 0) return errno;
  return 0;
}

// The stdin port reports HUP while the host side is closed (a template's
// clone before the guest kernel handled the VMM's reopening, usually done
// before we get here): go on once it is open or has data. HUP with no data
// also means "reopened and already at EOF" (an empty stdin), so the wait is
// short: a few polls, each a system call of emulated kernel work here.
void await_stdin(int fd) {
  for (int tries = 0; tries < 20; tries++) {  // up to ~200 ms
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) >= 0 && (!(p.revents & POLLHUP) || (p.revents & POLLIN))) return;
    timespec ts{0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
}

// True once the disk has sectors (read from sysfs: a few system calls per
// try, and the kernel's config-change work runs while we sleep).
bool wait_for_disk_capacity(const char* size_path) {
  for (int tries = 0; tries < 5000; tries++) {  // up to ~5 s
    int fd = open(size_path, O_RDONLY | O_CLOEXEC);
    char buf[32] = {};
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n > 0 && strtoull(buf, nullptr, 10) > 0) return true;
    timespec ts{0, 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  return false;
}

// A template of an image: bring what nearly every process of a glibc
// image touches (the dynamic loader, libc, the shells) into the page cache
// once, so clones share those pages instead of each reading them from the
// disk (virtio-blk requests and readahead are emulated kernel work on PVM
// hosts: ~0.3 M instructions per clone). readahead(), not read(): no copy.
void warm_page_cache() {
  static const char* const kCommon[] = {
      "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/ld-musl-x86_64.so.1",
      "/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/env", "/lib/x86_64-linux-gnu/libtinfo.so.6"};
  for (const char* path : kCommon) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) readahead(fd, 0, static_cast<size_t>(st.st_size));
    close(fd);
  }
}

void write_file(const char* path, const char* text) {
  unlink(path);  // the image's may be a symlink (e.g. into /run): replace, do not follow
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 || write(fd, text, strlen(text)) != static_cast<ssize_t>(strlen(text)))
    diag("vic-init: writing %s: %s", path, strerror(errno));
  if (fd >= 0) close(fd);
}

// What Docker writes into every container: its name for itself.
void write_identity_files(const char* hostname, bool net) {
  mkdir("/etc", 0755);
  char buf[512];
  snprintf(buf, sizeof buf, "%s\n", hostname);
  write_file("/etc/hostname", buf);
  snprintf(buf, sizeof buf, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
           net ? "10.0.2.15" : "127.0.1.1", hostname);
  write_file("/etc/hosts", buf);
  if (net) write_file("/etc/resolv.conf", "nameserver 10.0.2.3\n");
}

// In the command's child, before exec: the image's working directory
// (created if missing, as Docker does) and user: numeric "uid[:gid]" or
// names looked up in the image's own /etc/passwd and /etc/group.
void become_user_in(const char* user, const char* workdir) {
  uid_t uid = 0;
  gid_t gid = 0;
  const passwd* pw = nullptr;
  if (user[0] != '\0') {
    char name[256];
    snprintf(name, sizeof name, "%s", user);
    char* grp_name = strchr(name, ':');
    if (grp_name) *grp_name++ = '\0';
    char* end = nullptr;
    unsigned long n = strtoul(name, &end, 10);
    if (name[0] != '\0' && *end == '\0') {
      uid = static_cast<uid_t>(n);
      pw = getpwuid(uid);
      if (pw) gid = pw->pw_gid;
    } else {
      pw = getpwnam(name);
      if (!pw) {
        dprintf(STDERR_FILENO, "unable to find user %s: no matching entries in passwd file\n", name);
        _exit(126);
      }
      uid = pw->pw_uid;
      gid = pw->pw_gid;
    }
    if (grp_name && grp_name[0] != '\0') {
      n = strtoul(grp_name, &end, 10);
      if (*end == '\0') {
        gid = static_cast<gid_t>(n);
      } else if (const group* gr = getgrnam(grp_name)) {
        gid = gr->gr_gid;
      } else {
        dprintf(STDERR_FILENO, "unable to find group %s: no matching entries in group file\n", grp_name);
        _exit(126);
      }
    }
  }
  if (!getenv("HOME")) setenv("HOME", pw && pw->pw_dir[0] ? pw->pw_dir : "/", 1);
  if (workdir[0] != '\0') {
    // mkdir -p, as root, before dropping privileges.
    char path[4096];
    snprintf(path, sizeof path, "%s", workdir);
    for (char* p = path + 1; *p; p++)
      if (*p == '/') {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
      }
    mkdir(path, 0755);
    if (chdir(workdir) != 0) {
      dprintf(STDERR_FILENO, "vicvmm: working directory %s: %s\n", workdir, strerror(errno));
      _exit(126);
    }
  }
  if (user[0] == '\0') return;
  gid_t groups[64];
  int ngroups = 64;
  if (pw && getgrouplist(pw->pw_name, gid, groups, &ngroups) >= 0) {
    if (setgroups(static_cast<size_t>(ngroups), groups) != 0) _exit(126);
  } else if (setgroups(0, nullptr) != 0) {
    _exit(126);
  }
  if (setgid(gid) != 0 || setuid(uid) != 0) {
    dprintf(STDERR_FILENO, "vicvmm: switching to user %s: %s\n", user, strerror(errno));
    _exit(126);
  }
}

// A command the image does not have: let the image's own shell say so, in
// its own words and with its own status (127), as a user of that image
// expects; without a shell, a message of our own.
[[noreturn]] void exec_failed_in_image(char** argv, int e) {
  if (e == ENOENT && access("/bin/sh", X_OK) == 0) {
    static char sh[] = "sh", dash_c[] = "-c", script[] = "exec \"$0\" \"$@\"";
    static char* shell_argv[kMaxStrings + 4];
    shell_argv[0] = sh, shell_argv[1] = dash_c, shell_argv[2] = script;
    size_t i = 0;
    for (; argv[i] && i < kMaxStrings; i++) shell_argv[3 + i] = argv[i];
    shell_argv[3 + i] = nullptr;
    execv("/bin/sh", shell_argv);
  }
  dprintf(STDERR_FILENO, "%s: %s\n", argv[0], e == ENOENT ? "command not found" : strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

int main(int main_argc, char** main_argv) {
  const char* self = main_argc > 0 ? strrchr(main_argv[0], '/') : nullptr;
  if (self && strcmp(self + 1, "vic-chanbench") == 0) return chanbench_main(main_argc, main_argv);

  // The kernel opened /dev/console from the initramfs as fds 0-2. Keep our
  // own handle for tcdrain(); if the kernel could not open it, provide 0-2.
  int console = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (console >= 0 && fcntl(STDERR_FILENO, F_GETFD) < 0)
    for (int fd = 0; fd < 3; fd++) dup2(console, fd);

  // /dev/mem is in the initramfs, so the mailbox can be read (and READY
  // rung) before any mount; devtmpfs first only if the node is missing.
  bool dev_mounted = false;
  int memfd = open("/dev/mem", O_RDWR | O_CLOEXEC);
  if (memfd < 0 && errno == ENOENT) {
    mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    dev_mounted = true;
    memfd = open("/dev/mem", O_RDWR | O_CLOEXEC);
  }
  if (memfd < 0) {
    int err = errno;
    bell.use_port();  // the only channel left to report with
    fail(err, "open /dev/mem");
  }

  // The mailbox is ordinary (e820-reserved) RAM: a cacheable mapping of
  // the fd opened without O_SYNC. The doorbell is MMIO: uncached, through
  // an O_SYNC descriptor.
  void* page = mmap(nullptr, VIC_MAILBOX_SIZE, PROT_READ, MAP_SHARED, memfd, VIC_MAILBOX_GPA);
  if (page == MAP_FAILED) {
    int err = errno;
    bell.use_port();
    fail(err, "mmap mailbox");
  }
  copy_mailbox(page);
  // The extension area is mapped only when this mailbox uses it, or when
  // a clone's might (a template's).
  if (mb.flags & (VIC_MB_EXT_STRINGS | VIC_MB_TEMPLATE)) {
    void* ext = mmap(nullptr, VIC_MAILBOX_EXT_SIZE, PROT_READ, MAP_SHARED, memfd, VIC_MAILBOX_EXT_GPA);
    if (ext != MAP_FAILED) ext_area = ext;
    copy_mailbox(page);
  }

  int err = validate_mailbox();
  // Flags are only trusted from a valid mailbox; otherwise use the default.
  uint32_t flags = err == 0 ? mb.flags : 0;
  quiet = flags & VIC_MB_QUIET;
  int syncfd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
  if (flags & VIC_MB_CHANNEL_PORT) {
    if (!bell.use_port() && syncfd >= 0) bell.use_mmio(syncfd);
  } else if (syncfd < 0 || !bell.use_mmio(syncfd)) {
    bell.use_port();
  }
  if (syncfd >= 0) close(syncfd);  // the mapping stays valid
  close(memfd);
  if (err != 0) fail(err, "bad mailbox");
  bell.ring(VIC_EV_READY, 0);
  // A template keeps the page mapped: each clone's personality arrives there.
  if (!(flags & VIC_MB_TEMPLATE)) munmap(page, VIC_MAILBOX_SIZE);

  if (!dev_mounted) mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");

  // Send the command's "\n" as is: the host side is a file, a pipe or a
  // terminal that does its own newline translation, not a serial terminal.
  termios tio;
  if (console >= 0 && tcgetattr(console, &tio) == 0) {
    tio.c_oflag &= ~static_cast<tcflag_t>(ONLCR);
    tcsetattr(console, TCSANOW, &tio);
  }

  StdioPorts ports;
  if (flags & VIC_MB_STDIO_PORTS) ports = open_stdio_ports();
  // The image root before the network, so resolv.conf lands in the image;
  // both before a template's capture, so its clones inherit them.
  bool image_root = flags & VIC_MB_IMAGE_ROOT;
  if (image_root) {
    if (int e = switch_to_image_root(); e != 0) fail(e, "setting up the image's root filesystem");
    if (flags & VIC_MB_TEMPLATE) warm_page_cache();
  }
  if (flags & VIC_MB_NET) configure_network();

  if (flags & VIC_MB_TEMPLATE) {
    await_personality(page);
    if ((mb.flags & VIC_MB_STDIN) && ports.fd[0] >= 0) await_stdin(ports.fd[0]);
    // A clone of a template with an empty disk slot, given an image: the
    // VMM attached its disk at start and said so with a config-change
    // interrupt; the kernel learns the new capacity in a work item.
    if (!image_root && (mb.flags & VIC_MB_IMAGE_ROOT)) {
      if (!wait_for_disk_capacity("/sys/block/vda/size")) fail(ENXIO, "waiting for the image's disk");
      if (int e = switch_to_image_root(); e != 0) fail(e, "setting up the image's root filesystem");
      image_root = true;
    }
  }

  // Layout of strings[]: argv[0..argc), envp[0..envc), hostname, workdir, user.
  const char* hostname = strings[mb.argc + mb.envc];
  const char* workdir = strings[mb.argc + mb.envc + 1];
  const char* user = strings[mb.argc + mb.envc + 2];
  if (hostname[0] != '\0' && sethostname(hostname, strlen(hostname)) != 0)
    diag("vic-init: sethostname: %s", strerror(errno));
  if (image_root) write_identity_files(hostname, flags & VIC_MB_NET);

  static char* argv[kMaxStrings + 1];
  static char* envp[kMaxStrings + 1];
  static char sh[] = "/bin/sh";
  static char def_path[] = "PATH=/bin:/sbin:/usr/bin:/usr/sbin", def_home[] = "HOME=/",
              def_term[] = "TERM=linux";
  uint32_t argc = mb.argc;
  for (uint32_t i = 0; i < argc; i++) argv[i] = const_cast<char*>(strings[i]);
  if (argc == 0) argv[argc++] = sh;
  argv[argc] = nullptr;
  if (mb.envc == 0) {
    envp[0] = def_path, envp[1] = def_home, envp[2] = def_term, envp[3] = nullptr;
  } else {
    for (uint32_t i = 0; i < mb.envc; i++) envp[i] = const_cast<char*>(strings[mb.argc + i]);
    envp[mb.envc] = nullptr;
  }
  environ = envp;  // execvp searches this PATH

  // docker run -t: the command's own terminal, carried by PID 1.
  CommandTty tty;
  if (mb.flags & VIC_MB_TTY) {
    tty.master = open_tty_master();
    if (tty.master < 0) diag("vic-init: no pseudo-terminal for the command: %s", strerror(errno));
    tty.in = ports.fd[0];
    tty.out = ports.fd[1] >= 0 ? ports.fd[1] : STDOUT_FILENO;
  }

  pid_t child = fork();
  if (child < 0) fail(errno, "fork");
  if (child == 0) {
    // Own session, so the command is not in PID 1's process group. Stdio
    // is the virtio-console ports when the VMM offers them, else it stays
    // on /dev/console (inherited fds 0-2). /dev/console never becomes
    // a controlling tty, which is deliberate: hanging up a controlling tty
    // when the session leader exits would flush the UART's unsent output.
    setsid();
    if (tty.master >= 0) {
      become_tty_session(tty.master);
    } else {
      for (int i = 0; i < 3; i++)
        if (ports.fd[i] >= 0) dup2(ports.fd[i], i);  // dup2 clears O_CLOEXEC on the copy
    }
    // ioperm() rights survive fork and exec: do not hand the doorbell port
    // to the command (the MMIO mapping is not inherited across exec).
    if (bell.port) ioperm(VIC_DOORBELL_PORT, 4, 0);
    if (image_root) become_user_in(user, workdir);
    execvp(argv[0], argv);
    int e = errno;
    if (image_root) exec_failed_in_image(argv, e);
    // The default initramfs links only a few busybox applets (every cpio
    // entry costs boot time): run any other applet by name through busybox,
    // which answers "applet not found" (127) itself for a real typo.
    if (!image_root && e == ENOENT && strchr(argv[0], '/') == nullptr) execv("/bin/busybox", argv);
    char buf[256];
    int n = snprintf(buf, sizeof buf, "vic-init: cannot run %s: %s\n", argv[0], strerror(e));
    if (n > 0) {
      ssize_t r = write(STDERR_FILENO, buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1);
      (void)r;
    }
    _exit(127);
  }

  int status = wait_for_command(child, ports.fd[3], ports.fd[4], image_root, tty);
  uint32_t arg = WIFSIGNALED(status) ? (VIC_EXIT_SIGNALED | WTERMSIG(status))
                                     : static_cast<uint32_t>(WEXITSTATUS(status));

  // The console is an 8250 UART: output still queued in the kernel's tty
  // buffer would be lost when the VMM stops the VM at the EXIT doorbell.
  if (console >= 0) {
    tcdrain(console);
    fsync(console);
  }
  sync();  // in case the command wrote to a mounted disk
  bell.ring(VIC_EV_EXIT, arg);
  power_off();
}
