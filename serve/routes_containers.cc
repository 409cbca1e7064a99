// /containers: none exist until containers run as VMs (issue 10's VM side),
// so the list is honestly empty and everything else is left to the router's
// 501 "vicvmm does not implement ...".
#include "serve/routes.h"

namespace vicvmm::serve {

void add_container_routes(Router& r, const Context&) {
  r.add(http::verb::get, "/containers/json", [](Request&, Connection&) -> asio::awaitable<Response> {
    co_return json_response(nlohmann::json::array());
  });
}

}  // namespace vicvmm::serve
