#include "bench/soak.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "bench/suite.h"

namespace vicvmm::bench {

namespace {

uint64_t count_open_fds() {
  uint64_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;  // the directory's own descriptor
}

uint64_t rss_kib() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) / 1024;
}

uint64_t kernel_kib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0, total = 0;
  std::string unit;
  while (in >> key >> value) {
    if (key == "Slab:" || key == "KernelStack:" || key == "PageTables:" || key == "VmallocUsed:") total += value;
    std::getline(in, unit);
  }
  return total;
}

}  // namespace

Result<std::vector<SoakSample>> run_soak(const Kvm& kvm, const SoakOptions& o,
                                         const std::function<void(const SoakSample&)>& on_sample) {
  VIC_ASSIGN(auto tmpl, make_tiny_template(kvm));
  std::vector<SoakSample> samples;
  const uint64_t t0 = monotonic_ns();
  auto sample = [&](uint64_t cycles) {
    SoakSample s{cycles, count_open_fds(), rss_kib(), kernel_kib(), (monotonic_ns() - t0) / 1e9};
    samples.push_back(s);
    if (on_sample) on_sample(s);
  };
  CloneOptions opts;
  opts.timeout = std::chrono::seconds(10);
  Graveyard graveyard;  // VM teardown sleeps in KVM: done in parallel batches
  sample(0);
  for (uint64_t i = 1; i <= o.cycles; ++i) {
    VIC_ASSIGN(auto clone, Clone::create(kvm, tmpl, opts));
    VIC_TRY(clone->start(bench_request(static_cast<uint32_t>(i), 0)));
    VIC_ASSIGN(StopInfo stop, clone->run());
    if (stop.reason != StopReason::CommandExited)
      return err("soak: cycle {}: {}: {}", i, stop_reason_name(stop.reason), stop.detail);
    graveyard.add(std::move(clone));
    graveyard.maybe_flush();
    if (i % o.every == 0) {
      graveyard.flush();  // every VM of the sample's cycles destroyed before it is taken
      sample(i);
    }
  }
  graveyard.flush();
  return samples;
}

std::string soak_svg(const std::vector<SoakSample>& s) {
  struct Series {
    const char* title;
    uint64_t SoakSample::*field;
  };
  const Series series[] = {{"open file descriptors", &SoakSample::open_fds},
                           {"RSS (KiB)", &SoakSample::rss_kib},
                           {"host kernel memory (KiB)", &SoakSample::kernel_kib}};
  const int w = 640, h = 170, left = 80, right = 20, top = 30, bottom = 30;
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h * 3
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  const double xmax = s.empty() ? 1 : std::max<double>(1, static_cast<double>(s.back().cycles));
  for (int k = 0; k < 3; ++k) {
    const int y0 = k * h;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const auto& p : s) lo = std::min(lo, p.*(series[k].field)), hi = std::max(hi, p.*(series[k].field));
    if (s.empty()) lo = hi = 0;
    // The y range starts at 0 so that flat looks flat, not noise magnified.
    const double ymax = std::max<double>(1, static_cast<double>(hi) * 1.1);
    auto x = [&](double c) { return left + (w - left - right) * c / xmax; };
    auto y = [&](double v) { return y0 + top + (h - top - bottom) * (1 - v / ymax); };
    out << "<text x=\"" << left << "\" y=\"" << y0 + 18 << "\" font-weight=\"bold\">" << series[k].title
        << ": first " << (s.empty() ? 0 : s.front().*(series[k].field)) << ", last "
        << (s.empty() ? 0 : s.back().*(series[k].field)) << ", min " << lo << ", max " << hi << "</text>\n";
    out << "<line x1=\"" << left << "\" y1=\"" << y(0) << "\" x2=\"" << w - right << "\" y2=\"" << y(0)
        << "\" stroke=\"#999\"/>\n<line x1=\"" << left << "\" y1=\"" << y(ymax) << "\" x2=\"" << left << "\" y2=\""
        << y(0) << "\" stroke=\"#999\"/>\n";
    out << "<text x=\"" << left - 6 << "\" y=\"" << y(ymax) + 4 << "\" text-anchor=\"end\">"
        << static_cast<uint64_t>(ymax) << "</text>\n<text x=\"" << left - 6 << "\" y=\"" << y(0) + 4
        << "\" text-anchor=\"end\">0</text>\n";
    out << "<text x=\"" << w - right << "\" y=\"" << y(0) + 16 << "\" text-anchor=\"end\">"
        << static_cast<uint64_t>(xmax) << " cycles</text>\n";
    out << "<polyline fill=\"none\" stroke=\"#1f6fb2\" stroke-width=\"1.5\" points=\"";
    for (const auto& p : s) out << x(static_cast<double>(p.cycles)) << "," << y(static_cast<double>(p.*(series[k].field))) << " ";
    out << "\"/>\n";
  }
  out << "</svg>\n";
  return out.str();
}

}  // namespace vicvmm::bench
