/* libvicvmm from C: boot a template from a kernel and an initramfs, fork a
 * few clones of it, print their output and exit statuses.
 *
 *   cc fork_clones.c $(pkg-config --cflags --libs vicvmm) -o fork_clones
 *   ./fork_clones VMLINUX INITRAMFS [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vicvmm.h>

struct tag {
  int clone;
};

static void print_output(void* user, int stream, const char* data, size_t len) {
  const struct tag* t = user;
  fprintf(stream == 2 ? stderr : stdout, "[clone %d] %.*s", t->clone, (int)len, data);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s VMLINUX INITRAMFS [N]\n", argv[0]);
    return 2;
  }
  int n = argc > 3 ? atoi(argv[3]) : 3;
  vicvmm_error err;
  vicvmm_host* host = NULL;
  vicvmm_template* tmpl = NULL;
  int rc = 1;
  printf("libvicvmm %s\n", vicvmm_version());
  if (vicvmm_host_open(&host, &err) != VICVMM_OK) goto fail;
  vicvmm_template_config config = {.kernel_path = argv[1], .initrd_path = argv[2], .mem_bytes = 128 << 20};
  if (vicvmm_template_boot(host, &config, &tmpl, &err) != VICVMM_OK) goto fail;
  printf("template booted: %llu MiB of guest memory\n", (unsigned long long)(vicvmm_template_mem_bytes(tmpl) >> 20));

  for (int i = 1; i <= n; i++) {
    struct tag t = {i};
    vicvmm_clone_config cc = {.output = print_output, .user = &t, .timeout_ms = 60000};
    vicvmm_clone* clone = NULL;
    if (vicvmm_clone_create(host, tmpl, &cc, &clone, &err) != VICVMM_OK) goto fail;
    char script[64];
    snprintf(script, sizeof script, "echo hello from $(hostname); exit %d", i);
    const char* args[] = {"/bin/sh", "-c", script, NULL};
    char hostname[32];
    snprintf(hostname, sizeof hostname, "c-clone-%d", i);
    vicvmm_run_options run = {.argv = args, .hostname = hostname};
    int status = -1;
    int r = vicvmm_clone_run(clone, &run, &status, &err);
    uint64_t dirty = 0;
    if (r == VICVMM_OK) r = vicvmm_clone_dirty_pages(clone, &dirty, &err);
    vicvmm_clone_destroy(clone);
    if (r != VICVMM_OK) goto fail;
    printf("clone %d exited with status %d, %llu KiB private\n", i, status, (unsigned long long)dirty * 4);
  }

  /* A bad argument is an error code and a message, never a crash. */
  vicvmm_template* none = NULL;
  if (vicvmm_template_load(host, "/nonexistent-snapshot", &none, &err) != VICVMM_OK)
    printf("expected error: %s\n", err.message);
  rc = 0;
  goto out;
fail:
  fprintf(stderr, "error %d: %s\n", err.code, err.message);
out:
  vicvmm_template_release(tmpl);
  vicvmm_host_close(host);
  return rc;
}
