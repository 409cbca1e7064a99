// The Docker Engine API endpoints vicvmm answers, one file per resource
// (moby style): routes_system.cc, routes_images.cc, routes_containers.cc,
// routes_exec.cc, routes_ui.cc.
#pragma once

#include <string>

#include "image/store.h"
#include "serve/router.h"

namespace vicvmm::serve {

class ContainerManager;
class ExecManager;

struct Context {
  image::Store* store = nullptr;  // outlives the router
  std::string templates_dir;      // templates here keep their images from removal
  std::string version;            // vicvmm's own
  ContainerManager* containers = nullptr;  // null: no containers (no base template)
  ExecManager* execs = nullptr;            // with containers
};

void add_system_routes(Router& r, const Context& ctx);
void add_image_routes(Router& r, const Context& ctx);
void add_container_routes(Router& r, const Context& ctx);
void add_exec_routes(Router& r, const Context& ctx);
void add_ui_routes(Router& r, const Context& ctx);

inline void add_docker_routes(Router& r, const Context& ctx) {
  add_system_routes(r, ctx);
  add_image_routes(r, ctx);
  add_container_routes(r, ctx);
  add_exec_routes(r, ctx);
  add_ui_routes(r, ctx);
}

}  // namespace vicvmm::serve
