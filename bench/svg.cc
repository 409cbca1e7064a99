#include "bench/svg.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>

#include "bench/report.h"

namespace vicvmm::bench {

namespace {

constexpr double kWidth = 1060, kHeight = 1150;
constexpr double kLeft = 80, kPlotW = 560;  // plot area x range; legend to its right
constexpr double kLegendX = kLeft + kPlotW + 20;

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string text(double x, double y, const std::string& s, int size = 12, const char* anchor = "start",
                 const char* extra = "") {
  return fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" text-anchor=\"{}\" {}>{}</text>\n", x, y, size,
                     anchor, extra, esc(s));
}

std::string line(double x1, double y1, double x2, double y2, const char* stroke, double width = 1,
                 const char* dash = nullptr) {
  return fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"{}\"{}/>\n",
                     x1, y1, x2, y2, stroke, width, dash ? fmt::format(" stroke-dasharray=\"{}\"", dash) : "");
}

std::string us_tick(double us) {
  if (us < 1000) return fmt::format("{:.0f} us", us);
  if (us < 1e6) return fmt::format("{:.0f} ms", us / 1e3);
  return fmt::format("{:.0f} s", us / 1e6);
}

struct CdfSeries {
  const char* dist;
  const char* label;
  const char* color;
  const char* dash;  // nullptr: solid
};

// Latency CDF, log-x. Returns the SVG fragment for a panel whose top is at y0.
std::string cdf_panel(const SuiteResults& r, double y0, double h) {
  static const CdfSeries series[] = {
      {"clone/tiny/pool/first_instruction", "tiny, pool", "#1f77b4", nullptr},
      {"clone/tiny/no_pool/first_instruction", "tiny, no pool", "#ff7f0e", nullptr},
      {"restore/file/tiny/first_instruction", "tiny, new process from file", "#2ca02c", nullptr},
      {"clone/linux/pool/first_instruction", "Linux, pool", "#1f77b4", "7,4"},
      {"clone/linux/no_pool/first_instruction", "Linux, no pool", "#ff7f0e", "7,4"},
      {"restore/file/linux/first_instruction", "Linux, new process from file", "#2ca02c", "7,4"},
      {"floor/raw_kvm/to_run", "raw KVM floor (bare VM)", "#7f7f7f", "2,3"},
      {"clone/linux/pool/ready", "Linux, pool: to READY", "#9467bd", "7,4"},
  };
  std::string s;
  double lo = 1e300, hi = 0;
  for (const auto& se : series) {
    const Dist* d = r.dist(se.dist);
    if (!d) continue;
    for (double v : d->us)
      if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  s += text(kLeft, y0 - 14,
            "Clone latency CDF: request -> first instruction (just before the first KVM_RUN); log scale", 15,
            "start", "font-weight=\"bold\"");
  if (hi <= 0) return s + text(kLeft + 20, y0 + 40, "(no clone samples)");
  const double d0 = std::floor(std::log10(lo)), d1 = std::ceil(std::log10(hi * 1.0001));
  auto X = [&](double us) { return kLeft + (std::log10(std::max(us, lo)) - d0) / std::max(1.0, d1 - d0) * kPlotW; };
  auto Y = [&](double q) { return y0 + h - q * h; };
  // Frame, grid, ticks.
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" stroke=\"#333\"/>\n", kLeft, y0,
                   kPlotW, h);
  for (double q : {0.25, 0.5, 0.75, 0.9, 0.99}) {
    s += line(kLeft, Y(q), kLeft + kPlotW, Y(q), "#ddd", 1, q >= 0.9 ? "3,3" : nullptr);
    if (q < 0.9) s += text(kLeft - 6, Y(q) + 4, fmt::format("{:.2f}", q), 11, "end");
    else s += text(kLeft + 4, Y(q) + (q > 0.95 ? 11 : -3), q == 0.99 ? "p99" : "p90", 10, "start", "fill=\"#888\"");
  }
  s += text(kLeft - 6, Y(0) + 4, "0", 11, "end") + text(kLeft - 6, Y(1) + 4, "1", 11, "end");
  for (double dec = d0; dec <= d1; dec += 1) {
    double v = std::pow(10.0, dec);
    s += line(X(v), y0, X(v), y0 + h, "#ccc");
    s += text(X(v), y0 + h + 16, us_tick(v), 11, "middle");
    if (dec < d1)
      for (double m : {2.0, 5.0}) s += line(X(v * m), y0 + h, X(v * m), y0 + h - 5, "#999");
  }
  s += text(kLeft + kPlotW / 2, y0 + h + 34, "latency (log scale)", 12, "middle");
  s += text(kLeft - 50, y0 + h / 2, "fraction of clones", 12, "middle",
            fmt::format("transform=\"rotate(-90 {} {})\"", kLeft - 50, y0 + h / 2).c_str());
  // Curves: a step CDF through at most 200 quantiles.
  double ly = y0 + 10;
  for (const auto& se : series) {
    const Dist* d = r.dist(se.dist);
    if (!d || d->us.empty()) continue;
    std::vector<double> v = d->us;
    std::sort(v.begin(), v.end());
    const size_t n = v.size(), steps = std::min<size_t>(n, 200);
    std::string pts;
    double prev_q = 0;
    for (size_t i = 1; i <= steps; ++i) {
      double q = static_cast<double>(i) / static_cast<double>(steps);
      size_t idx = std::min(n - 1, static_cast<size_t>(std::ceil(q * n)) - 1);
      double x = X(v[idx]);
      pts += fmt::format("{:.1f},{:.1f} {:.1f},{:.1f} ", x, Y(prev_q), x, Y(q));
      prev_q = q;
    }
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>\n", se.color,
                     se.dash ? fmt::format(" stroke-dasharray=\"{}\"", se.dash) : "", pts);
    Percentiles p = d->p();
    s += line(kLegendX, ly, kLegendX + 28, ly, se.color, 2.5, se.dash);
    s += text(kLegendX + 34, ly + 4, se.label, 12);
    s += text(kLegendX + 34, ly + 19, fmt::format("n={} p50 {} p99 {}", p.count, format_us(p.p50), format_us(p.p99)),
              10, "start", "fill=\"#555\"");
    ly += 38;
  }
  return s;
}

struct DensitySeries {
  const char* curve;
  const char* color;
  bool extrapolate;
};

std::string density_panel(const SuiteResults& r, double y0, double h) {
  static const DensitySeries series[] = {
      {"tiny/shells", "#1f77b4", false},
      {"tiny/idle", "#17becf", false},
      {"linux/idle", "#d62728", true},
      {"linux/after_true", "#9467bd", true},
  };
  std::string s;
  s += text(kLeft, y0 - 14,
            "Density: host memory vs live clones (Private_Dirty + KVM kernel memory, deltas from the start)", 15,
            "start", "font-weight=\"bold\"");
  double xmax = 0, ymax = 0;
  auto slope = [](const DensityCurve& c) {  // MiB per clone: least-squares slope, as the suite reports it
    double n = static_cast<double>(c.points.size()), sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const auto& p : c.points) {
      double y = p.user_mib + p.kernel_mib;
      sx += p.clones;
      sy += y;
      sxx += p.clones * p.clones;
      sxy += p.clones * y;
    }
    double den = n * sxx - sx * sx;
    return den > 0 ? (n * sxy - sx * sy) / den : 0.0;
  };
  for (const auto& c : r.density)
    for (const auto& p : c.points) xmax = std::max(xmax, p.clones);
  if (xmax <= 0) return s + text(kLeft + 20, y0 + 40, "(no density samples)");
  for (const auto& c : r.density) {
    for (const auto& p : c.points) ymax = std::max(ymax, p.user_mib + p.kernel_mib);
    for (const auto& se : series)
      if (se.extrapolate && c.name == se.curve) ymax = std::max(ymax, slope(c) * xmax);
  }
  ymax = std::max(ymax, 1.0);
  // Round the y range up to a nice step.
  double step = std::pow(10.0, std::floor(std::log10(ymax)));
  if (ymax / step < 2) step /= 5;
  else if (ymax / step < 5) step /= 2;
  ymax = std::ceil(ymax / step) * step;
  auto X = [&](double n) { return kLeft + n / xmax * kPlotW; };
  auto Y = [&](double mib) { return y0 + h - mib / ymax * h; };
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" stroke=\"#333\"/>\n", kLeft, y0,
                   kPlotW, h);
  for (double v = 0; v <= ymax + step / 2; v += step) {
    s += line(kLeft, Y(v), kLeft + kPlotW, Y(v), "#e5e5e5");
    s += text(kLeft - 6, Y(v) + 4, v >= 1024 ? fmt::format("{:.1f} GiB", v / 1024) : fmt::format("{:.0f} MiB", v), 11,
              "end");
  }
  double xstep = xmax >= 500 ? 100 : xmax >= 100 ? 20 : 5;
  for (double n = 0; n <= xmax + 0.5; n += xstep) {
    s += line(X(n), y0 + h, X(n), y0 + h - 5, "#666");
    s += text(X(n), y0 + h + 16, fmt::format("{:.0f}", n), 11, "middle");
  }
  s += text(kLeft + kPlotW / 2, y0 + h + 34, "live clones", 12, "middle");
  s += text(kLeft - 62, y0 + h / 2, "host memory", 12, "middle",
            fmt::format("transform=\"rotate(-90 {} {})\"", kLeft - 62, y0 + h / 2).c_str());
  double ly = y0 + 10;
  for (const auto& se : series) {
    const DensityCurve* c = nullptr;
    for (const auto& dc : r.density)
      if (dc.name == se.curve) c = &dc;
    if (!c || c->points.size() < 2) continue;
    std::string pts;
    for (const auto& p : c->points) {
      pts += fmt::format("{:.1f},{:.1f} ", X(p.clones), Y(p.user_mib + p.kernel_mib));
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"/>\n", X(p.clones),
                       Y(p.user_mib + p.kernel_mib), se.color);
    }
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", se.color, pts);
    const double per = slope(*c);
    const double last_n = c->points.back().clones;
    if (se.extrapolate && last_n < xmax)
      s += line(X(last_n), Y(per * last_n), X(xmax), Y(per * xmax), se.color, 1.5, "6,4");
    s += line(kLegendX, ly, kLegendX + 28, ly, se.color, 2.5);
    s += text(kLegendX + 34, ly + 4, c->label, 12);
    s += text(kLegendX + 34, ly + 19,
              fmt::format("{:.0f} KiB/clone, measured to {:.0f}{}", per * 1024, last_n,
                          se.extrapolate && last_n < xmax ? " (dashed: extrapolated)" : ""),
              10, "start", "fill=\"#555\"");
    ly += 38;
  }
  if (auto fit = r.scalar("density/linux/idle/fit_20gib"))
    s += text(kLegendX, ly + 14,
              fmt::format("20 GiB holds ~{:.0f} idle Linux clones", *fit), 12, "start", "font-weight=\"bold\"") +
         text(kLegendX, ly + 30, "(extrapolated from the slope)", 10, "start", "fill=\"#555\"");
  return s;
}

}  // namespace

std::string render_svg(const SuiteResults& r) {
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"#fafafa\"/>\n",
      kWidth, kHeight);
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  s += text(20, 28, fmt::format("vicvmm bench ({})", r.mode), 18, "start", "font-weight=\"bold\"");
  s += text(20, 48,
            fmt::format("{}; {} x {} ({} host, {}); load {:.2f} -> {:.2f}; {:.0f} s", date, r.machine.nproc,
                        r.machine.cpu_model, r.machine.host_kind, r.machine.kernel, r.machine.load_start,
                        r.machine.load_end, r.wall_s),
            12, "start", "fill=\"#444\"");
  s += cdf_panel(r, 100, 380);
  s += density_panel(r, 600, 380);
  double y = 1036;
  s += text(20, y, "Ratios of medians, both sides alternated in this run:", 11, "start", "font-weight=\"bold\"");
  size_t i = 0;
  for (const auto& q : r.ratios) {
    double x = 20 + static_cast<double>(i % 2) * 520;
    s += text(x, y + 16 + static_cast<double>(i / 2) * 14, fmt::format("{}: {:.1f}x", q.label, q.value), 10, "start",
              "fill=\"#333\"");
    ++i;
  }
  s += text(20, kHeight - 8, r.command_line, 10, "start", "fill=\"#777\"");
  s += "</svg>\n";
  return s;
}

Result<> write_svg(const SuiteResults& r, const std::string& path) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return sys_err("bench: opening {}", path);
  out << render_svg(r);
  out.flush();
  if (!out) return sys_err("bench: writing {}", path);
  return {};
}

}  // namespace vicvmm::bench
