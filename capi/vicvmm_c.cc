// The C API (include/vicvmm.h) over the C++ library: handles own C++
// objects, every entry point catches whatever the C++ side might throw
// (std::bad_alloc, a std::system_error from std::thread) and turns it and
// every Result error into a code and a message.
#include "include/vicvmm.h"

#include <sys/random.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "clone/clone.h"
#include "clone/pool.h"
#include "clone/template.h"
#include "vmm/host/nested_pvm.h"
#include "vmm/mapped_file.h"
#include "vmm/seccomp/seccomp.h"

struct vicvmm_host {
  vicvmm::Kvm kvm;
  vicvmm::HostKind kind;
};
struct vicvmm_template {
  std::shared_ptr<const vicvmm::Template> t;
};
struct vicvmm_clone {
  std::unique_ptr<vicvmm::Clone> c;
  bool used = false;  // started since its creation or last reset
};
struct vicvmm_pool {
  std::unique_ptr<vicvmm::ClonePool> p;
};

namespace {

using vicvmm::Error;
using vicvmm::Result;

int report(vicvmm_error* err, int code, int sys_errno, const std::string& message) {
  if (err) {
    err->code = code;
    err->sys_errno = sys_errno;
    std::snprintf(err->message, sizeof err->message, "%s", message.c_str());
  }
  return code;
}

int report(vicvmm_error* err, const Error& e) {
  return report(err, e.sys_errno ? VICVMM_E_SYSTEM : VICVMM_E_INVALID, e.sys_errno, e.message);
}

int ok(vicvmm_error* err) {
  if (err) {
    err->code = VICVMM_OK;
    err->sys_errno = 0;
    err->message[0] = '\0';
  }
  return VICVMM_OK;
}

// Runs `f` (returning an int code), never letting an exception out.
template <class F>
int guarded(vicvmm_error* err, const char* what, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return report(err, VICVMM_E_SYSTEM, ENOMEM, std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    return report(err, VICVMM_E_INTERNAL, 0, std::string(what) + ": " + e.what());
  } catch (...) {
    return report(err, VICVMM_E_INTERNAL, 0, std::string(what) + ": unexpected failure");
  }
}

std::vector<std::string> strings(const char* const* list) {
  std::vector<std::string> out;
  for (size_t i = 0; list && list[i]; ++i) out.emplace_back(list[i]);
  return out;
}

vicvmm::CloneOptions clone_options(const vicvmm_clone_config* config) {
  vicvmm::CloneOptions o;
  if (!config) return o;
  o.timeout = std::chrono::milliseconds(config->timeout_ms);
  if (config->output) {
    vicvmm_output_fn fn = config->output;
    void* user = config->user;
    o.on_output = [fn, user](uint32_t, uint32_t port, std::span<const uint8_t> bytes) {
      fn(user, port == 2 ? 2 : 1, reinterpret_cast<const char*>(bytes.data()), bytes.size());
    };
  } else {
    o.on_output = [](uint32_t, uint32_t, std::span<const uint8_t>) {};
  }
  return o;
}

// Start + run of one clone: the exit status or an error.
int run_clone(vicvmm::Clone& c, const vicvmm_run_options* options, int* exit_status, vicvmm_error* err) {
  vicvmm::AgentRequest req;
  if (options) {
    req.argv = strings(options->argv);
    req.env = strings(options->env);
    if (options->hostname) req.hostname = options->hostname;
  }
  if (req.env.empty()) req.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=linux"};
  if (getrandom(req.seed.data(), sizeof req.seed, 0) != static_cast<ssize_t>(sizeof req.seed))
    return report(err, VICVMM_E_SYSTEM, errno, "clone: getrandom failed");
  req.wallclock_ns = vicvmm::realtime_ns();
  if (auto r = c.start(req); !r) return report(err, r.error());
  auto stop = c.run();
  if (!stop) return report(err, stop.error());
  if (stop->reason != vicvmm::StopReason::CommandExited)
    return report(err, VICVMM_E_GUEST, 0,
                  fmt::format("clone {}: {}: {}", c.id(), vicvmm::stop_reason_name(stop->reason), stop->detail));
  if (exit_status) *exit_status = stop->exit_status;
  return ok(err);
}

}  // namespace

extern "C" {

const char* vicvmm_version(void) { return VICVMM_VERSION; }

void vicvmm_set_seccomp(int enabled) { vicvmm::seccomp::set_enabled(enabled != 0); }

int vicvmm_host_open(vicvmm_host** out, vicvmm_error* err) {
  return guarded(err, "host", [&] {
    if (!out) return report(err, VICVMM_E_INVALID, 0, "vicvmm_host_open: no place for the handle (out is NULL)");
    *out = nullptr;
    auto kvm = vicvmm::Kvm::open();
    if (!kvm) return report(err, kvm.error());
    *out = new vicvmm_host{std::move(*kvm), vicvmm::detect_host_kind()};
    return ok(err);
  });
}

void vicvmm_host_close(vicvmm_host* host) { delete host; }

int vicvmm_template_boot(vicvmm_host* host, const vicvmm_template_config* config, vicvmm_template** out,
                         vicvmm_error* err) {
  return guarded(err, "template", [&] {
    if (!host || !config || !out) return report(err, VICVMM_E_INVALID, 0, "vicvmm_template_boot: a NULL argument");
    *out = nullptr;
    if (!config->kernel_path || !config->initrd_path)
      return report(err, VICVMM_E_INVALID, 0, "vicvmm_template_boot: kernel_path and initrd_path are required");
    auto kernel = vicvmm::MappedFile::open(config->kernel_path, "kernel");
    if (!kernel) return report(err, kernel.error());
    auto initrd = vicvmm::MappedFile::open(config->initrd_path, "initrd");
    if (!initrd) return report(err, initrd.error());
    vicvmm::TemplateSpec spec;
    spec.kernel = kernel->bytes();
    spec.initrd = initrd->bytes();
    if (config->mem_bytes) spec.mem_size = config->mem_bytes;
    if (spec.mem_size > vicvmm::kMaxGuestMemory || spec.mem_size < vicvmm::kMinGuestMemory || spec.mem_size % 4096)
      return report(err, VICVMM_E_INVALID, 0,
                    fmt::format("template: mem_bytes {} is not a 4 KiB multiple from {} MiB to {} GiB", spec.mem_size,
                                vicvmm::kMinGuestMemory >> 20, vicvmm::kMaxGuestMemory >> 30));
    if (config->cmdline) spec.extra_cmdline = config->cmdline;
    if (config->timeout_ms) spec.timeout = std::chrono::milliseconds(config->timeout_ms);
    // The command's stdio and a source of randomness, as `vicvmm template create`.
    spec.devices.push_back({vicvmm::virtio::kDeviceConsole, {}, false, {}});
    spec.devices.push_back({vicvmm::virtio::kDeviceRng, {}, false, {}});
    auto t = vicvmm::Template::boot(host->kvm, spec);
    if (!t) return report(err, VICVMM_E_GUEST, t.error().sys_errno, t.error().message);
    *out = new vicvmm_template{std::move(*t)};
    return ok(err);
  });
}

int vicvmm_template_load(vicvmm_host* host, const char* dir, vicvmm_template** out, vicvmm_error* err) {
  return guarded(err, "template", [&] {
    if (!host || !dir || !out) return report(err, VICVMM_E_INVALID, 0, "vicvmm_template_load: a NULL argument");
    *out = nullptr;
    // A directory the caller gave us: it may change under us, so a sealed copy.
    auto t = vicvmm::Template::load(dir, host->kind, true, vicvmm::SnapshotMemory::SealedCopy);
    if (!t) return report(err, t.error());
    *out = new vicvmm_template{std::move(*t)};
    return ok(err);
  });
}

int vicvmm_template_save(const vicvmm_template* tmpl, const char* dir, vicvmm_error* err) {
  return guarded(err, "template", [&] {
    if (!tmpl || !dir) return report(err, VICVMM_E_INVALID, 0, "vicvmm_template_save: a NULL argument");
    if (auto r = tmpl->t->save(dir); !r) return report(err, r.error());
    return ok(err);
  });
}

uint64_t vicvmm_template_mem_bytes(const vicvmm_template* tmpl) { return tmpl ? tmpl->t->mem_size() : 0; }

void vicvmm_template_release(vicvmm_template* tmpl) { delete tmpl; }

int vicvmm_clone_create(vicvmm_host* host, const vicvmm_template* tmpl, const vicvmm_clone_config* config,
                        vicvmm_clone** out, vicvmm_error* err) {
  return guarded(err, "clone", [&] {
    if (!host || !tmpl || !out) return report(err, VICVMM_E_INVALID, 0, "vicvmm_clone_create: a NULL argument");
    *out = nullptr;
    auto c = vicvmm::Clone::create(host->kvm, tmpl->t, clone_options(config));
    if (!c) return report(err, c.error());
    *out = new vicvmm_clone{std::move(*c)};
    return ok(err);
  });
}

int vicvmm_clone_run(vicvmm_clone* clone, const vicvmm_run_options* options, int* exit_status, vicvmm_error* err) {
  return guarded(err, "clone", [&] {
    if (!clone) return report(err, VICVMM_E_INVALID, 0, "vicvmm_clone_run: clone is NULL");
    if (clone->used)
      return report(err, VICVMM_E_INVALID, 0,
                    fmt::format("clone {}: it ran already; vicvmm_clone_reset() it first", clone->c->id()));
    clone->used = true;
    return run_clone(*clone->c, options, exit_status, err);
  });
}

int vicvmm_clone_reset(vicvmm_clone* clone, vicvmm_error* err) {
  return guarded(err, "clone", [&] {
    if (!clone) return report(err, VICVMM_E_INVALID, 0, "vicvmm_clone_reset: clone is NULL");
    if (auto r = clone->c->reset(); !r) return report(err, r.error());
    clone->used = false;
    return ok(err);
  });
}

int vicvmm_clone_dirty_pages(vicvmm_clone* clone, uint64_t* pages, vicvmm_error* err) {
  return guarded(err, "clone", [&] {
    if (!clone || !pages) return report(err, VICVMM_E_INVALID, 0, "vicvmm_clone_dirty_pages: a NULL argument");
    auto n = clone->c->dirty_pages();
    if (!n) return report(err, n.error());
    *pages = *n;
    return ok(err);
  });
}

void vicvmm_clone_destroy(vicvmm_clone* clone) { delete clone; }

int vicvmm_pool_create(vicvmm_host* host, const vicvmm_template* tmpl, const vicvmm_clone_config* config,
                       vicvmm_pool** out, vicvmm_error* err) {
  return guarded(err, "pool", [&] {
    if (!host || !tmpl || !out) return report(err, VICVMM_E_INVALID, 0, "vicvmm_pool_create: a NULL argument");
    *out = nullptr;
    vicvmm::PoolOptions po;
    po.clone = clone_options(config);
    if (config && config->pool_ready) po.target = config->pool_ready;
    *out = new vicvmm_pool{std::make_unique<vicvmm::ClonePool>(host->kvm, tmpl->t, po)};
    return ok(err);
  });
}

int vicvmm_pool_run(vicvmm_pool* pool, const vicvmm_run_options* options, int* exit_status, vicvmm_error* err) {
  return guarded(err, "pool", [&] {
    if (!pool) return report(err, VICVMM_E_INVALID, 0, "vicvmm_pool_run: pool is NULL");
    auto c = pool->p->acquire();
    if (!c) return report(err, c.error());
    int rc = run_clone(**c, options, exit_status, err);
    pool->p->release(std::move(*c));
    return rc;
  });
}

void vicvmm_pool_destroy(vicvmm_pool* pool) { delete pool; }

}  // extern "C"
