// Percentile summaries for latency samples (fork summary, benchmarks).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace vicvmm {

struct Percentiles {
  size_t count = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};

// Nearest-rank percentiles of `samples` (any unit); empty input gives zeros.
inline Percentiles percentiles(std::vector<double> samples) {
  Percentiles p;
  p.count = samples.size();
  if (samples.empty()) return p;
  std::sort(samples.begin(), samples.end());
  auto rank = [&](double q) {
    size_t r = static_cast<size_t>(std::ceil(q * static_cast<double>(samples.size())));
    return samples[std::clamp<size_t>(r, 1, samples.size()) - 1];
  };
  p.min = samples.front();
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  p.max = samples.back();
  return p;
}

}  // namespace vicvmm
