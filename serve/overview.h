// What every container VM costs, in one JSON document: `vicvmm ps`, the web
// page at /ui and `docker stats` all read the same figures.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "image/store.h"
#include "serve/containers.h"

namespace vicvmm::serve {

// {"host": {...totals}, "containers": [...], "images": [...]}. Memory per
// running container: private, shared with its template, kernel (see
// vm_memory.h); host totals count each template's shared pages once
// ("used") against every container counting them again ("without_sharing").
nlohmann::json overview(const std::vector<Container>& containers, const std::vector<image::Image>& images,
                        const std::string& template_name);

}  // namespace vicvmm::serve
