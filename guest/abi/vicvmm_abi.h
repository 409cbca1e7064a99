/* The contract between the VMM and the guest agent vic-init.
 *
 * Plain C so that the freestanding test guests, vic-init and the VMM all
 * include the same definitions. Two pieces:
 *
 *  - the MAILBOX: one guest RAM page, marked reserved in the e820 map, that
 *    the VMM fills before the guest runs (command, argv, env, personality).
 *    vic-init maps it from user mode through /dev/mem and reads it natively,
 *    so reading it costs no exit and no guest-kernel work.
 *  - the DOORBELL: a 32-bit write-only register the agent writes from user
 *    mode to tell the VMM something (ready, exit status). It exists both as an
 *    MMIO register (a page vic-init maps through /dev/mem) and as an I/O port
 *    (reached after ioperm()); the VMM serves both and dispatches identically.
 */
#ifndef VICVMM_ABI_H
#define VICVMM_ABI_H

#include <stdint.h>

/* Guest-physical layout shared with the agent. */
#define VIC_MAILBOX_GPA 0x9d000ull   /* one page, e820-reserved, below the MP table */
#define VIC_MAILBOX_SIZE 0x1000u
#define VIC_DOORBELL_MMIO_GPA 0xfe000000ull /* one page, no memslot: every access exits */
#define VIC_DOORBELL_PORT 0x510u            /* 4-byte port, reached after ioperm() */

/* Doorbell value: event in bits 31..24, argument in bits 23..0. */
#define VIC_DOORBELL(event, arg) ((uint32_t)(((uint32_t)(event) << 24) | ((uint32_t)(arg) & 0xffffffu)))
#define VIC_DOORBELL_EVENT(v) ((uint32_t)(v) >> 24)
#define VIC_DOORBELL_ARG(v) ((uint32_t)(v) & 0xffffffu)

enum vic_event {
  VIC_EV_READY = 1,     /* agent is up (arg: 0); time-to-init is measured here  */
  VIC_EV_EXIT = 2,      /* command finished (arg: exit status 0..255, or 0x100|signal) */
  VIC_EV_ERROR = 3,     /* agent failed before running the command (arg: errno) */
  VIC_EV_TEMPLATE = 4,  /* agent parked itself as a template (clone engine) */
  VIC_EV_PING = 5,      /* no-op used to measure the channel's round trip */
  VIC_EV_PANIC = 6,     /* the guest kernel panicked (rung by panic() itself:
                           guest/kernel/panic-doorbell.patch) */
};

#define VIC_EXIT_SIGNALED 0x100u /* set in VIC_EV_EXIT arg when killed by a signal */

#define VIC_MAILBOX_MAGIC 0x5849424c49414d56ull /* "VMAILBOX" little-endian-ish tag */
#define VIC_MAILBOX_VERSION 2u

/* Strings that do not fit in the page (a real image's Env and command line
 * often do not) go to this e820-reserved area just below it instead, with
 * VIC_MB_EXT_STRINGS set: 128 KiB, so a request is bounded but generous. */
#define VIC_MAILBOX_EXT_GPA 0x7d000ull
#define VIC_MAILBOX_EXT_SIZE 0x20000u

/* Mailbox page. Strings live in `strings` (or in the extension area), each
 * NUL-terminated, in order: argv[0..argc-1], envp[0..envc-1], hostname,
 * working directory, user. Trailing strings may be omitted (empty). */
struct vic_mailbox {
  uint64_t magic;
  uint32_t version;
  uint32_t flags;        /* VIC_MB_* */
  uint32_t argc;
  uint32_t envc;
  uint32_t strings_len;  /* bytes used in strings[] */
  uint32_t clone_id;
  uint64_t seed[4];      /* fresh randomness for the guest RNG */
  uint64_t wallclock_ns; /* host CLOCK_REALTIME when the mailbox was written */
  uint64_t generation;   /* bumped by the VMM each time it rewrites the mailbox */
  uint8_t reserved[48];
  char strings[VIC_MAILBOX_SIZE - 128];
};

#define VIC_MB_CHANNEL_PORT 1u   /* agent should use the port doorbell instead of MMIO */
#define VIC_MB_QUIET 2u          /* agent should not print its own diagnostics */
/* The command's stdin, stdout and stderr are the ports of the virtio-console
 * device (/dev/vport0p0..2), not the serial console. */
#define VIC_MB_STDIO_PORTS 8u
/* A virtio-net on the VMM's user-mode network: the agent brings up lo and
 * eth0 as 10.0.2.15/24 with the default route via 10.0.2.2 and DNS at
 * 10.0.2.3 (the same in every VM, so clones need no reconfiguration). */
#define VIC_MB_NET 16u
/* Template boot: after its setup the agent rings VIC_EV_TEMPLATE, where the
 * VMM captures the VM, and then waits in user mode until `generation`
 * changes. Each clone resumes there with its own mailbox (the personality)
 * already written, rings VIC_EV_READY once it has read it, and runs it. */
#define VIC_MB_TEMPLATE 4u
/* A clone with stdin (its template closed it): the VMM reopens the stdin
 * port at start; the agent waits until the guest kernel has seen that before
 * it runs the command, which would otherwise read an early EOF. */
#define VIC_MB_STDIN 128u
/* The strings are in the extension area (VIC_MAILBOX_EXT_GPA), not in the page. */
#define VIC_MB_EXT_STRINGS 32u
/* A container image: /dev/vda is its root filesystem (EROFS). The agent
 * mounts it read-only under a tmpfs-backed overlay, mounts /proc /sys /dev
 * /dev/pts /dev/shm /tmp inside, and switches root to it before running the
 * command (as `user`, in `working directory`). */
#define VIC_MB_IMAGE_ROOT 64u
/* The command runs on a pseudo-terminal (docker run -t): its output, stderr
 * included, leaves raw on the stdout port, stdin feeds the terminal, and
 * RESIZE frames on the exec channel with session id 0 set its size. */
#define VIC_MB_TTY 256u


/* ---- exec channel: more processes in a running VM (`docker exec`) ------------
 * Two more virtio-console ports carry a framed stream: port 3 ("exec-in",
 * /dev/vport0p3) host -> guest, port 4 ("exec-out", /dev/vport0p4) guest ->
 * host. Each frame is a vic_exec_frame header and `len` payload bytes
 * (len <= VIC_EXEC_MAX_PAYLOAD); `id` names the session, chosen by the host.
 * Neither side trusts the other's frames: a bad one ends the channel
 * (host side) or is dropped (guest side), never more. */
struct vic_exec_frame {
  uint32_t type; /* VIC_EXEC_* */
  uint32_t id;
  uint32_t len;
};
#define VIC_EXEC_MAX_PAYLOAD 65536u
#define VIC_EXEC_MAX_SESSIONS 32u
/* host -> guest */
#define VIC_EXEC_START 1u     /* u32 flags, u32 argc, u32 envc, then NUL-terminated argv, env, workdir, user */
#define VIC_EXEC_STDIN 2u     /* bytes for the process's stdin */
#define VIC_EXEC_STDIN_EOF 3u /* its stdin is closed */
#define VIC_EXEC_SIGNAL 4u    /* u32 signal number, to the process group */
#define VIC_EXEC_RESIZE 5u    /* u16 rows, u16 cols (a terminal's size) */
/* guest -> host */
#define VIC_EXEC_STARTED 16u  /* u32 pid in the guest */
#define VIC_EXEC_STDOUT 17u
#define VIC_EXEC_STDERR 18u
#define VIC_EXEC_EXIT 19u     /* u32 status, encoded as VIC_EV_EXIT's arg; the session ends */
/* START flags */
#define VIC_EXEC_TTY 1u        /* a pseudo-terminal: stdout only, raw */
#define VIC_EXEC_OPEN_STDIN 2u /* STDIN frames follow; else stdin is /dev/null */

#ifdef __cplusplus
static_assert(sizeof(struct vic_mailbox) == VIC_MAILBOX_SIZE, "mailbox is one page");
#else
_Static_assert(sizeof(struct vic_mailbox) == VIC_MAILBOX_SIZE, "mailbox is one page");
#endif

#endif /* VICVMM_ABI_H */
