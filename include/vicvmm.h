/* libvicvmm's C API: boot a Linux guest once as a template, then run
 * commands in copy-on-write clones of it, each its own KVM virtual machine.
 *
 * Errors: every call that can fail returns 0 or a negative VICVMM_E_* code
 * and, when `err` is not NULL, fills it with a message naming the object
 * and the cause. Nothing here throws, exits or aborts on bad input.
 *
 * Threads: a handle is not safe to use from two threads at once, except a
 * template, which any number of clones and pools may share from any
 * threads, and a pool, whose vicvmm_pool_run() may be called from many
 * threads at once. Output callbacks run on a VM's I/O thread.
 *
 * seccomp: the threads libvicvmm starts (vCPUs, I/O, network, pool
 * builders) confine themselves to allow-lists of the system calls they
 * need; a forbidden call is reported on stderr and the process dies of
 * SIGSYS. The caller's threads are never confined, but output callbacks
 * run under the I/O thread's list: they may write to open fds and take
 * locks, not open files or sockets. vicvmm_set_seccomp(0), or
 * VICVMM_SECCOMP=off in the environment, turns this off for the process.
 *
 * Link with `pkg-config --cflags --libs vicvmm`. Needs /dev/kvm. */
#ifndef VICVMM_H
#define VICVMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VICVMM_API_VERSION 1

enum {
  VICVMM_OK = 0,
  VICVMM_E_INVALID = -1,  /* a bad argument (NULL handle, bad path, bad size) */
  VICVMM_E_SYSTEM = -2,   /* the host failed us (KVM, memory, files); see sys_errno */
  VICVMM_E_GUEST = -3,    /* the guest did not finish its command (timeout, panic, crash) */
  VICVMM_E_INTERNAL = -4, /* a bug in libvicvmm, reported instead of crashing */
};

typedef struct vicvmm_error {
  int code;          /* VICVMM_E_* */
  int sys_errno;     /* errno of the failing system call, or 0 */
  char message[1024];
} vicvmm_error;

typedef struct vicvmm_host vicvmm_host;         /* /dev/kvm and what this host is */
typedef struct vicvmm_template vicvmm_template; /* a booted, captured guest */
typedef struct vicvmm_clone vicvmm_clone;       /* one VM forked from a template */
typedef struct vicvmm_pool vicvmm_pool;         /* clones built ahead of use */

/* The command's output: stream 1 = stdout, 2 = stderr. */
typedef void (*vicvmm_output_fn)(void* user, int stream, const char* data, size_t len);

typedef struct vicvmm_template_config {
  const char* kernel_path;  /* vmlinux (ELF) or bzImage */
  const char* initrd_path;  /* an initramfs with vicvmm's agent (vic-init) as /init */
  uint64_t mem_bytes;       /* 0: 128 MiB */
  const char* cmdline;      /* extra kernel command line, or NULL */
  unsigned timeout_ms;      /* the boot's limit; 0: 300 s */
} vicvmm_template_config;

/* For clones and pools; NULL: all defaults. */
typedef struct vicvmm_clone_config {
  vicvmm_output_fn output;  /* NULL: the output is dropped */
  void* user;               /* passed to `output` */
  unsigned timeout_ms;      /* per run; 0: none */
  size_t pool_ready;        /* pools: clones kept built ahead; 0: 8 */
} vicvmm_clone_config;

typedef struct vicvmm_run_options {
  const char* const* argv;  /* NULL-terminated; NULL: /bin/sh */
  const char* const* env;   /* NULL-terminated "KEY=value"; NULL: PATH, HOME, TERM defaults */
  const char* hostname;     /* NULL: the clone's default */
} vicvmm_run_options;

const char* vicvmm_version(void);

/* 1 (the default) or 0: whether threads libvicvmm starts from now on
 * confine themselves with seccomp. Call it before the first host_open. */
void vicvmm_set_seccomp(int enabled);

int vicvmm_host_open(vicvmm_host** out, vicvmm_error* err);
/* After every template, clone and pool made with it is gone. */
void vicvmm_host_close(vicvmm_host* host);

int vicvmm_template_boot(vicvmm_host* host, const vicvmm_template_config* config, vicvmm_template** out,
                         vicvmm_error* err);
int vicvmm_template_load(vicvmm_host* host, const char* dir, vicvmm_template** out, vicvmm_error* err);
int vicvmm_template_save(const vicvmm_template* tmpl, const char* dir, vicvmm_error* err);
uint64_t vicvmm_template_mem_bytes(const vicvmm_template* tmpl);
/* Clones and pools keep what they need: release whenever you are done. */
void vicvmm_template_release(vicvmm_template* tmpl);

int vicvmm_clone_create(vicvmm_host* host, const vicvmm_template* tmpl, const vicvmm_clone_config* config,
                        vicvmm_clone** out, vicvmm_error* err);
/* Runs a command to its end. *exit_status: 0-255, or 128 + signal. A clone
 * runs once; vicvmm_clone_reset() makes it ready for another run. */
int vicvmm_clone_run(vicvmm_clone* clone, const vicvmm_run_options* options, int* exit_status, vicvmm_error* err);
int vicvmm_clone_reset(vicvmm_clone* clone, vicvmm_error* err);
/* Pages of guest memory this clone wrote (its private host memory / 4 KiB). */
int vicvmm_clone_dirty_pages(vicvmm_clone* clone, uint64_t* pages, vicvmm_error* err);
void vicvmm_clone_destroy(vicvmm_clone* clone);

int vicvmm_pool_create(vicvmm_host* host, const vicvmm_template* tmpl, const vicvmm_clone_config* config,
                       vicvmm_pool** out, vicvmm_error* err);
/* A fresh clone from the pool runs the command; it is destroyed after. */
int vicvmm_pool_run(vicvmm_pool* pool, const vicvmm_run_options* options, int* exit_status, vicvmm_error* err);
void vicvmm_pool_destroy(vicvmm_pool* pool);

#ifdef __cplusplus
}
#endif

#endif /* VICVMM_H */
