// libvicvmm from C++: the clone engine itself, for what the C API does not
// give (here a ClonePool with shells built ahead and each clone's copied
// pages). No stable ABI: build it against the exact installed version.
//
//   c++ -std=c++20 pool_clones.cc $(pkg-config --cflags --libs vicvmm-cpp) -o pool_clones
//   ./pool_clones VMLINUX INITRAMFS [N]
#include <cstdio>
#include <cstdlib>
#include <string>

#include <clone/pool.h>
#include <clone/template.h>
#include <vmm/kvm/kvm.h>
#include <vmm/mapped_file.h>

using namespace vicvmm;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s VMLINUX INITRAMFS [N]\n", argv[0]);
    return 2;
  }
  const int n = argc > 3 ? std::atoi(argv[3]) : 3;
  auto fail = [](const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.message.c_str());
    return 1;
  };
  auto kvm = Kvm::open();
  if (!kvm) return fail(kvm.error());
  auto kernel = MappedFile::open(argv[1], "kernel");
  if (!kernel) return fail(kernel.error());
  auto initrd = MappedFile::open(argv[2], "initrd");
  if (!initrd) return fail(initrd.error());

  TemplateSpec spec;
  spec.kernel = kernel->bytes();
  spec.initrd = initrd->bytes();
  spec.devices.push_back({virtio::kDeviceConsole, {}, false, {}});  // the command's stdout and stderr
  auto tmpl = Template::boot(*kvm, spec);
  if (!tmpl) return fail(tmpl.error());
  std::printf("template booted: %llu MiB of guest memory\n", (unsigned long long)((*tmpl)->mem_size() >> 20));

  PoolOptions popts;
  popts.target = static_cast<size_t>(n);
  popts.clone.timeout = std::chrono::seconds(60);
  popts.clone.on_output = [](uint32_t id, uint32_t, std::span<const uint8_t> bytes) {
    std::printf("[pool clone %u] %.*s", id, static_cast<int>(bytes.size()), reinterpret_cast<const char*>(bytes.data()));
  };
  ClonePool pool(*kvm, *tmpl, popts);
  if (auto r = pool.wait_ready(static_cast<size_t>(n)); !r) return fail(r.error());
  std::printf("%zu shells built ahead\n", pool.ready());

  for (int i = 1; i <= n; ++i) {
    auto clone = pool.acquire();
    if (!clone) return fail(clone.error());
    AgentRequest req;
    req.argv = {"/bin/sh", "-c", "echo hello from $(hostname); exit " + std::to_string(i)};
    req.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin"};
    req.hostname = "cpp-clone-" + std::to_string(i);
    req.clone_id = static_cast<uint32_t>(i);
    if (auto r = (*clone)->start(req); !r) return fail(r.error());
    auto stop = (*clone)->run();
    if (!stop) return fail(stop.error());
    std::printf("pool clone %d: %s, status %d\n", i, stop_reason_name(stop->reason), stop->exit_status);
    pool.release(std::move(*clone));
  }
  // Errors are values, never exceptions or aborts.
  auto bad = Template::load("/nonexistent-snapshot", detect_host_kind());
  if (!bad) std::printf("expected error: %s\n", bad.error().message.c_str());
  return 0;
}
