// Reporting SuiteResults: the terminal summary and Google Benchmark's JSON.
#pragma once

#include <cstdio>
#include <string>

#include "bench/suite.h"

namespace vicvmm::bench {

// "85 us", "7.3 ms", "21.50 s".
std::string format_us(double us);

// The summary table: distributions (n, p50, p90, p99, max), throughput and
// memory figures, ratios, targets met/missed with what bounds each miss.
void print_summary(const SuiteResults& r, std::FILE* out);

// Google Benchmark's JSON format, written by benchmark::JSONReporter when
// libbenchmark is available at build time (else an equivalent writer). One
// iteration run per distribution (iterations = samples, real_time = mean,
// counters p50/p90/p99/min/max in us) plus a "median" aggregate; scalars,
// ratios, targets and density points as runs with counters.
Result<> write_json(const SuiteResults& r, const std::string& path, const std::string& executable);

// True when write_json uses libbenchmark's own reporter.
bool json_uses_libbenchmark();

}  // namespace vicvmm::bench
