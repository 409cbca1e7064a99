// A self-contained SVG of the suite's results, written by hand (no
// dependencies): the latency CDF of clones (pool / no pool / restore from
// file, tiny and Linux, with the raw KVM floor) and the density curve (host
// memory against live clones).
#pragma once

#include <string>

#include "bench/suite.h"

namespace vicvmm::bench {

std::string render_svg(const SuiteResults& r);
Result<> write_svg(const SuiteResults& r, const std::string& path);

}  // namespace vicvmm::bench
