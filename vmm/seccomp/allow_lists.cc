// What each kind of vicvmm thread may call, and why. A call missing here
// kills the process with a report naming it (seccomp.cc), so the test
// suites, which run with seccomp on, find a missing entry; an entry that
// is here without a reason is a hole.
#include "vmm/seccomp/allow_lists.h"

namespace vicvmm::seccomp {

namespace {

// Every thread: the C++ runtime and glibc underneath our own code.
constexpr Allowed kBase[] = {
    {"read", "eventfds, pipes and the thread's own fds"},
    {"write", "eventfds, console and log output, error messages on stderr"},
    {"readv", "stdio and iostreams"},
    {"writev", "stdio and iostreams"},
    {"close", "RAII: an object destroyed on this thread closes its fd"},
    {"futex", "std::mutex, std::condition_variable, std::promise"},
    {"brk", "malloc"},
    {"mmap", "malloc's large blocks and new arenas"},
    {"munmap", "free of large blocks"},
    {"mremap", "realloc of large blocks"},
    {"mprotect", "malloc's arena growth"},
    {"madvise", "malloc trimming; glibc frees an exiting thread's stack this way"},
    {"rt_sigreturn", "return from the vCPU kick handler and from others"},
    {"rt_sigprocmask", "glibc's thread exit and abort()"},
    {"sigaltstack", "glibc's thread exit"},
    {"tgkill", "abort() raising SIGABRT; kicking a vCPU out of KVM_RUN"},
    {"gettid", "thread ids for kicks and logs"},
    {"getpid", "abort() and raise()"},
    {"clock_gettime", "timestamps, when the vDSO falls back to the syscall"},
    {"gettimeofday", "as clock_gettime"},
    {"clock_nanosleep", "std::this_thread::sleep_for"},
    {"nanosleep", "as clock_nanosleep"},
    {"sched_yield", "std::this_thread::yield, spinning locks"},
    {"sched_getaffinity", "std::thread::hardware_concurrency"},
    {"getrandom", "std::random_device; glibc's malloc hardening"},
    {"fstat", "stdio's first write to a stream"},
    {"newfstatat", "stdio's first write to a stream (glibc 2.36 uses fstatat)"},
    {"lseek", "stdio"},
    {"restart_syscall", "a sleep interrupted by a signal resumes through it"},
    {"exit", "thread exit"},
    {"exit_group", "process exit from any thread (std::exit, a fatal error)"},
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__) || defined(VICVMM_SANITIZED)
    // A sanitizer report reads the process's maps and names the binary.
    {"openat", "sanitizer reports: /proc/self/maps"},
    {"readlink", "sanitizer reports: /proc/self/exe"},
    {"readlinkat", "sanitizer reports"},
    {"prctl", "sanitizer runtime: PR_GET_DUMPABLE and thread names"},
    {"sched_getparam", "sanitizer runtime"},
    {"getrlimit", "sanitizer runtime: stack size"},
    {"prlimit64", "sanitizer runtime: stack size"},
    {"uname", "sanitizer runtime"},
    {"pipe2", "sanitizer runtime: probing whether memory is readable (IsAccessibleMemoryRange)"},
    {"pipe", "as pipe2"},
    // LeakSanitizer at exit stops the world from the exiting thread: a
    // tracer task (clone) that ptrace-attaches every thread and waits. With
    // these it still dies of SIGSYS under serve's API list (a call not yet
    // found: its signals are blocked, so no report), so tools/test runs the
    // sanitized suites with detect_leaks=0.
    {"clone", "LeakSanitizer's tracer task"},
    {"ptrace", "LeakSanitizer's tracer: attaching to every thread to read its registers"},
    {"wait4", "LeakSanitizer: waiting for the tracer and the traced threads"},
    {"rt_sigaction", "LeakSanitizer's tracer: its own signal handlers"},
    {"getppid", "LeakSanitizer's tracer"},
#endif
};

// The vCPU thread handles every exit of its vCPU in place: port I/O and
// MMIO to device registers, the guest agent's doorbell, the host quirks.
constexpr Allowed kVcpu[] = {
    {"ioctl", "KVM_RUN, register get/set for the host quirks, KVM_IRQ_LINE, KVM_IOEVENTFD and "
              "KVM_IRQFD when a driver activates a queue (KVM ioctls only)"},
    {"eventfd2", "a virtio queue's kick and interrupt eventfds, made when the driver activates it"},
    {"epoll_ctl", "registering an activated queue with the I/O loop"},
    {"sendto", "UART and console output to a socket, with MSG_NOSIGNAL"},
    {"sendmsg", "as sendto"},
    {"poll", "waiting for a full console pipe or socket to drain"},
    {"fcntl", "console fds: O_NONBLOCK"},
};

// The I/O thread serves every device of every VM in the process.
constexpr Allowed kIo[] = {
    {"ioctl", "KVM_IRQ_LINE where no irqfd is used (KVM ioctls only)"},
    {"epoll_wait", "the loop itself"},
    {"epoll_pwait", "the loop itself"},
    {"epoll_ctl", "handlers adding and removing fds"},
    {"pread64", "virtio-blk without io_uring"},
    {"pwrite64", "virtio-blk without io_uring"},
    {"preadv", "virtio-blk without io_uring"},
    {"pwritev", "virtio-blk without io_uring"},
    {"fsync", "virtio-blk flush"},
    {"fdatasync", "virtio-blk flush"},
    {"fallocate", "virtio-blk discard and write-zeroes"},
    {"io_uring_enter", "virtio-blk: submitting and reaping requests"},
    {"sendto", "console and exec output to sockets, with MSG_NOSIGNAL"},
    {"sendmsg", "as sendto"},
    {"recvfrom", "console input from a socket"},
    {"recvmsg", "as recvfrom"},
    {"poll", "a bounded wait for a slow console reader"},
    {"ppoll", "as poll"},
    {"fcntl", "O_NONBLOCK on console fds"},
    {"shutdown", "ending an exec session's output stream"},
    {"eventfd2", "queue eventfds made on reset"},
};

// libslirp's user-mode network stack: the guest's TCP/UDP connections
// become host sockets here, and published ports listen here.
constexpr Allowed kNet[] = {
    {"poll", "the loop over every backend's sockets"},
    {"ppoll", "as poll"},
    {"socket", "a guest connection or a published port"},
    {"connect", "a guest's outgoing connection"},
    {"bind", "published ports (-p)"},
    {"listen", "published ports (-p)"},
    {"accept", "a connection to a published port"},
    {"accept4", "as accept"},
    {"setsockopt", "SO_REUSEADDR, TCP_NODELAY, buffer sizes"},
    {"getsockopt", "SO_ERROR after a non-blocking connect"},
    {"getsockname", "the address a connection came from"},
    {"getpeername", "as getsockname"},
    {"sendto", "guest traffic out"},
    {"recvfrom", "traffic for the guest"},
    {"sendmsg", "guest traffic out"},
    {"recvmsg", "traffic for the guest"},
    {"shutdown", "a guest's half-close"},
    {"fcntl", "O_NONBLOCK on new sockets"},
    {"ioctl", "FIONREAD/FIONBIO on sockets (tty-class ioctls only)"},
    {"uname", "glib"},
};

// Builds ready clone shells: a new VM, memslots over the template's
// memory, vCPUs, devices (virtio-blk's io_uring) and their eventfds.
constexpr Allowed kPoolBuilder[] = {
    {"ioctl", "KVM_CREATE_VM, memslots, irqchip, vCPUs, state restore (KVM ioctls only)"},
    {"memfd_create", "guest memory that is not the template's"},
    {"ftruncate", "sizing that memory"},
    {"eventfd2", "queue kick and interrupt eventfds"},
    {"epoll_ctl", "registering devices with the I/O loop"},
    {"fcntl", "F_DUPFD_CLOEXEC and flags of shared fds"},
    {"dup", "each device keeps its own copy of a shared fd"},
    {"dup3", "as dup"},
    {"io_uring_setup", "a virtio-blk device's ring"},
    {"io_uring_register", "its completion eventfd"},
    {"io_uring_enter", "as io_uring_setup"},
    {"openat", "/dev/kvm and disk images of the template"},
    {"setpriority", "the builder runs at the lowest priority"},
    {"flock", "a shared lock on an image's disk, so nothing rewrites it under the guest"},
    {"poll", "a device's backend fd"},
    {"sendto", "waking the network loop"},
};

// Destroys released clones: closing a VM, its vCPUs and devices.
constexpr Allowed kPoolReaper[] = {
    {"ioctl", "removing memslots and eventfds from a VM being torn down (KVM ioctls only)"},
    {"epoll_ctl", "unregistering devices from the I/O loop"},
    {"io_uring_enter", "draining a virtio-blk ring"},
    {"setpriority", "the reapers run at the lowest priority"},
};

// Copies a clone's stdin into its console until EOF.
constexpr Allowed kStdinPump[] = {
    {"poll", "waiting for input with a timeout (to notice the clone's end)"},
    {"recvfrom", "stdin that is a socket"},
    {"ioctl", "KVM_IRQ_LINE for the console's interrupt (KVM ioctls only)"},
    {"fcntl", "O_NONBLOCK"},
};

// serve worker: accepts `docker exec` sessions on the container's exec
// socket and runs each on a thread of its own.
constexpr Allowed kExec[] = {
    {"poll", "the accept loop's timeout"},
    {"accept4", "a new exec session from serve"},
    {"recvfrom", "session messages and the client's stdin"},
    {"recvmsg", "messages carrying the client's socket (SCM_RIGHTS)"},
    {"sendto", "messages to serve, with MSG_NOSIGNAL"},
    {"sendmsg", "as sendto"},
    {"shutdown", "ending a session's stream"},
    {"setsockopt", "a send timeout on the client's socket"},
    {"ioctl", "KVM_IRQ_LINE for the console's interrupt (KVM ioctls only)"},
    {"fcntl", "O_NONBLOCK"},
    {"clone", "a thread per session and per stdin pump"},
    {"clone3", "as clone (glibc 2.34+)"},
    {"set_robust_list", "a new thread's start"},
    {"rseq", "a new thread's start"},
    {"unlink", "the exec socket when the listener stops"},
};

// serve's API threads: HTTP from the docker CLI, the image store (unpack,
// EROFS), container records and logs, and the container monitor. Broad
// on files, but no KVM, no mounts, no ptrace, no namespaces, no modules,
// no BPF. mkfs.erofs runs under this list too (a filter passes over exec).
constexpr Allowed kApi[] = {
    // Sockets: clients, and the control sockets of worker processes.
    {"accept", "docker CLI connections"},
    {"accept4", "as accept"},
    {"recvfrom", "requests"},
    {"recvmsg", "worker messages"},
    {"sendto", "responses, with MSG_NOSIGNAL"},
    {"sendmsg", "handing a hijacked client socket to a worker (SCM_RIGHTS)"},
    {"shutdown", "closing a response stream"},
    {"socketpair", "a control channel to a worker"},
    {"socket", "connecting to a worker's exec socket"},
    {"connect", "as socket"},
    {"bind", "exec sockets of container directories made ahead"},
    {"listen", "as bind"},
    {"setsockopt", "socket options on accepted connections"},
    {"getsockopt", "SO_PEERCRED"},
    {"getsockname", "the listener's address"},
    {"getpeername", "the client's address"},
    {"epoll_wait", "asio's reactor"},
    {"epoll_pwait", "asio's reactor"},
    {"epoll_ctl", "asio's reactor"},
    {"epoll_create1", "asio"},
    {"eventfd2", "asio's wakeups"},
    {"timerfd_create", "asio's timers"},
    {"timerfd_settime", "asio's timers"},
    {"inotify_init1", "following a container's log as the worker writes it"},
    {"inotify_add_watch", "as inotify_init1"},
    {"poll", "waiting on a worker with a timeout"},
    {"ppoll", "as poll"},
    {"pipe2", "mkfs.erofs's error output"},
    {"ioctl", "FIONBIO/FIONREAD on sockets, isatty (tty-class ioctls only)"},
    // Files: the state directory, the image store, unpacking layers.
    {"openat", "records, logs, blobs, layer files"},
    {"open", "as openat"},
    {"openat2", "unpacking layers with RESOLVE_IN_ROOT"},
    {"stat", "file metadata"},
    {"lstat", "as stat"},
    {"statx", "as stat"},
    {"fstatfs", "disk usage of the store"},
    {"statfs", "as fstatfs"},
    {"getdents64", "listing directories"},
    {"mkdir", "state and store directories"},
    {"mkdirat", "as mkdir"},
    {"unlink", "removing files"},
    {"unlinkat", "as unlink"},
    {"rmdir", "removing directories"},
    {"rename", "atomic replacement of records"},
    {"renameat", "as rename"},
    {"renameat2", "as rename"},
    {"link", "hard links in layers"},
    {"linkat", "as link"},
    {"symlink", "symbolic links in layers"},
    {"symlinkat", "as symlink"},
    {"readlink", "reading links"},
    {"readlinkat", "as readlink"},
    {"mknodat", "device files in layers"},
    {"mknod", "as mknodat"},
    {"chmod", "modes from layers"},
    {"fchmod", "as chmod"},
    {"fchmodat", "as chmod"},
    {"chown", "owners from layers"},
    {"fchown", "as chown"},
    {"fchownat", "as chown"},
    {"lchown", "as chown"},
    {"utimensat", "mtimes from layers"},
    {"setxattr", "xattrs from layers"},
    {"lsetxattr", "as setxattr"},
    {"fsetxattr", "as setxattr"},
    {"getxattr", "reading xattrs for EROFS"},
    {"lgetxattr", "as getxattr"},
    {"fgetxattr", "as getxattr"},
    {"listxattr", "as getxattr"},
    {"llistxattr", "as getxattr"},
    {"flistxattr", "as getxattr"},
    {"access", "checks before running tools"},
    {"faccessat", "as access"},
    {"faccessat2", "as access"},
    {"pread64", "blobs"},
    {"pwrite64", "blobs"},
    {"preadv", "blobs"},
    {"pwritev", "blobs"},
    {"fsync", "records and blobs made durable"},
    {"fdatasync", "as fsync"},
    {"ftruncate", "spooled bodies, records rewritten in place"},
    {"truncate", "a removed container's records emptied for the next container"},
    {"fallocate", "spooled bodies"},
    {"fadvise64", "libarchive reading layers sequentially"},
    {"flock", "the store's lock"},
    {"fcntl", "locks, O_NONBLOCK, F_DUPFD_CLOEXEC"},
    {"dup", "fds for child processes"},
    {"dup2", "as dup"},
    {"dup3", "as dup"},
    {"copy_file_range", "copying blobs"},
    {"sendfile", "copying blobs"},
    {"getcwd", "relative paths"},
    {"chdir", "mkfs.erofs"},
    {"fchdir", "as chdir"},
    {"umask", "file modes"},
    {"memfd_create", "spooled bodies"},
    {"kill", "docker stop/kill: signals to worker processes"},
    {"pidfd_open", "watching workers"},
    {"pidfd_send_signal", "signals to workers"},
    {"wait4", "reaping mkfs.erofs and workers"},
    {"waitid", "as wait4"},
    {"getrusage", "CPU time for docker stats"},
    {"times", "as getrusage"},
    {"sysinfo", "host memory totals"},
    {"uname", "docker version and info"},
    {"getuid", "file ownership"},
    {"geteuid", "as getuid"},
    {"getgid", "as getuid"},
    {"getegid", "as getuid"},
    {"getppid", "as getuid"},
    {"getpgrp", "as getuid"},
    {"getgroups", "as getuid"},
    {"prlimit64", "fd limits"},
    {"getrlimit", "fd limits"},
    {"rt_sigaction", "posix_spawn resets signal handlers in the child"},
    // Running mkfs.erofs: posix_spawn's vfork child execs it, and it and
    // its dynamic loader start under this list.
    {"clone", "posix_spawn"},
    {"clone3", "posix_spawn"},
    {"vfork", "posix_spawn"},
    {"execve", "mkfs.erofs"},
    {"close_range", "posix_spawn's closefrom"},
    {"arch_prctl", "a new program's TLS"},
    {"set_tid_address", "a new program's start"},
    {"set_robust_list", "a new program or thread's start"},
    {"rseq", "as set_robust_list"},
    {"prctl", "thread names"},
};

}  // namespace

std::span<const Allowed> base_list() { return kBase; }

std::span<const Allowed> kind_list(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::Vcpu: return kVcpu;
    case ThreadKind::Io: return kIo;
    case ThreadKind::Net: return kNet;
    case ThreadKind::PoolBuilder: return kPoolBuilder;
    case ThreadKind::PoolReaper: return kPoolReaper;
    case ThreadKind::StdinPump: return kStdinPump;
    case ThreadKind::Exec: return kExec;
    case ThreadKind::Api: return kApi;
  }
  return {};
}

IoctlClass ioctl_class(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::Net:
    case ThreadKind::Api: return IoctlClass::Tty;
    default: return IoctlClass::Kvm;
  }
}

}  // namespace vicvmm::seccomp
