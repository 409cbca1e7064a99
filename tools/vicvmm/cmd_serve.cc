// `vicvmm serve`: the Docker Engine API (1.41) on a Unix socket, so the
// docker CLI manages vicvmm's images (and, later, containers as VMs).
#include <cstdio>

#include "image/store.h"
#include <climits>
#include <unistd.h>

#include "serve/containers.h"
#include "serve/execs.h"
#include "serve/http_server.h"
#include "serve/worker_pool.h"
#include "serve/routes.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/image_ref.h"
#include "tools/vicvmm/options.h"

#ifndef VICVMM_VERSION
#define VICVMM_VERSION "unknown"
#endif

namespace vicvmm::cli {

int cmd_serve(const ServeOptions& o) {
  auto fail = [](const std::string& msg) {
    fmt::print(stderr, "vicvmm: error: {}\n", msg);
    return kExitVmmError;
  };
  serve::ServerOptions so;
  so.unix_path = o.socket;
  so.group = o.group;
  so.tcp = o.http;
  if (!o.max_body.empty()) {
    auto size = parse_size(o.max_body);
    if (!size) return fail("--max-body: " + size.error().message);
    if (*size == 0) return fail("--max-body: must be more than 0");
    so.max_body_bytes = *size;
  }
  auto store = image::Store::open(image::Store::default_root());
  if (!store) return fail(store.error().message);
  so.spool_dir = store->root() + "/tmp";
  so.max_spool_bytes = image::Limits{}.max_unpacked_bytes;  // no input may unpack to more anyway
  so.headers = serve::docker_headers(VICVMM_VERSION);

  // Containers are clones of the base template (the default guest with an
  // empty disk slot), each in a worker process of its own.
  std::unique_ptr<serve::WorkerPool> workers;
  std::unique_ptr<serve::ContainerManager> containers;
  std::unique_ptr<serve::ExecManager> execs;
  if (o.containers) {
    auto base = ensure_base_template();
    if (!base) return fail("containers: " + base.error().message);
    auto base_dir = template_path(*base);
    if (!base_dir) return fail(base_dir.error().message);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return fail("containers: cannot find this program's path (/proc/self/exe)");
    self[n] = '\0';
    workers = std::make_unique<serve::WorkerPool>(self, o.ready_workers);
    auto m = serve::ContainerManager::open(state_dir() + "/containers", *store, *workers, *base_dir, templates_dir());
    if (!m) return fail(m.error().message);
    containers = std::move(*m);
    execs = std::make_unique<serve::ExecManager>(*containers);
  }

  serve::Router router;
  serve::add_docker_routes(router, serve::Context{&*store, templates_dir(), VICVMM_VERSION, containers.get(), execs.get()});
  auto server = serve::Server::create(so, router);
  if (!server) return fail(server.error().message);
  fmt::print(stderr, "vicvmm serve: Docker API {} on {}{}{}\n", serve::kApiVersion,
             o.socket.empty() ? "" : "unix://" + o.socket, !o.socket.empty() && !o.http.empty() ? " and " : "",
             o.http.empty() ? "" : "tcp://" + o.http);
  std::fflush(stderr);
  auto r = (*server)->run(true);
  server->reset();  // joins the pool, removes the socket file
  execs.reset();
  containers.reset();  // running containers carry on; a restarted serve re-adopts them
  workers.reset();     // idle workers are stopped
  if (!r) return fail(r.error().message);
  fmt::print(stderr, "vicvmm serve: stopped\n");
  return 0;
}

}  // namespace vicvmm::cli
