// vic-chanbench: round trip of the guest->VMM doorbell from guest user mode.
//
// usage: vic-chanbench [N]     (default N = 2000)
//
// Writes VIC_DOORBELL(VIC_EV_PING, i) N times through the MMIO doorbell page
// (/dev/mem) and N times through the I/O port (after ioperm), and prints the
// mean cost of one write, which is one VM exit and return:
//   mmio: X ns/op
//   port: Y ns/op          (or "port: unavailable: reason")
// The VMM counts the PINGs. HOST.md: a user-mode `out` may #GP on hosts that
// do not honour the TSS I/O bitmap, so the port run is guarded by a SIGSEGV
// handler instead of killing the benchmark.

#include "guest/abi/vicvmm_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <stdint.h>

namespace {

sigjmp_buf fault_jmp;

void on_fault(int) { siglongjmp(fault_jmp, 1); }

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Only the low 24 bits of i fit in the doorbell argument; that is fine for
// a counter the VMM only uses to see PINGs arrive.
void bench_mmio(unsigned n) {
  int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
  if (fd < 0) {
    printf("mmio: unavailable: open /dev/mem: %s\n", strerror(errno));
    return;
  }
  void* p = mmap(nullptr, 4096, PROT_WRITE, MAP_SHARED, fd, VIC_DOORBELL_MMIO_GPA);
  close(fd);
  if (p == MAP_FAILED) {
    printf("mmio: unavailable: mmap: %s\n", strerror(errno));
    return;
  }
  auto* reg = static_cast<volatile uint32_t*>(p);
  if (sigsetjmp(fault_jmp, 1) != 0) {
    printf("mmio: unavailable: fault on the doorbell page\n");
    return;
  }
  *reg = VIC_DOORBELL(VIC_EV_PING, 0);  // warm up: page-table fill, first exit
  uint64_t t0 = now_ns();
  for (unsigned i = 0; i < n; i++) *reg = VIC_DOORBELL(VIC_EV_PING, i);
  uint64_t t1 = now_ns();
  printf("mmio: %llu ns/op\n", static_cast<unsigned long long>((t1 - t0) / n));
  munmap(p, 4096);
}

void bench_port(unsigned n) {
  if (ioperm(VIC_DOORBELL_PORT, 4, 1) != 0) {
    printf("port: unavailable: ioperm: %s\n", strerror(errno));
    return;
  }
  if (sigsetjmp(fault_jmp, 1) != 0) {
    printf("port: unavailable: out faulted (I/O bitmap not honoured?)\n");
    return;
  }
  outl(VIC_DOORBELL(VIC_EV_PING, 0), VIC_DOORBELL_PORT);  // warm up
  uint64_t t0 = now_ns();
  for (unsigned i = 0; i < n; i++) outl(VIC_DOORBELL(VIC_EV_PING, i), VIC_DOORBELL_PORT);
  uint64_t t1 = now_ns();
  printf("port: %llu ns/op\n", static_cast<unsigned long long>((t1 - t0) / n));
}

}  // namespace

// Entered from vic-init's main when run as /bin/vic-chanbench (a link to
// /init): one static binary in the initramfs instead of two.
int chanbench_main(int argc, char** argv) {
  unsigned n = 2000;
  if (argc > 1) {
    char* end;
    unsigned long v = strtoul(argv[1], &end, 10);
    if (*end != '\0' || v == 0 || v > 100000000) {
      fprintf(stderr, "usage: vic-chanbench [N>0]\n");
      return 2;
    }
    n = static_cast<unsigned>(v);
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  struct sigaction sa {};
  sa.sa_handler = on_fault;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  bench_mmio(n);
  bench_port(n);
  return 0;
}
