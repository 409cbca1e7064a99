// `vicvmm fork`: run N clones of a template, each running CMD with its own
// personality, print their output prefixed by clone id, then a latency summary.
#include <sys/random.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "clone/latency.h"
#include "clone/pool.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/image_ref.h"
#include "tools/vicvmm/options.h"

namespace vicvmm::cli {

namespace {

struct Sample {
  double first_run_us = 0, personality_us = 0, exit_us = 0;
  int status = -1;
  std::string failure;  // set when the clone did not report an exit status
};

std::array<uint64_t, 4> fresh_seed() {
  std::array<uint64_t, 4> s{};
  if (getrandom(s.data(), sizeof s, 0) != static_cast<ssize_t>(sizeof s)) {
    // getrandom cannot fail for 32 bytes once the pool is initialised; mix time in as a last resort.
    s[0] ^= monotonic_ns();
  }
  return s;
}

void print_summary(const std::vector<Sample>& samples, double wall_s, const ClonePool* pool) {
  std::fflush(stdout);  // the clones' output first, then the summary
  std::vector<double> first, pers, exit;
  size_t failed = 0;
  for (const auto& s : samples) {
    if (s.first_run_us > 0) first.push_back(s.first_run_us);
    if (s.personality_us > 0) pers.push_back(s.personality_us);
    if (s.exit_us > 0) exit.push_back(s.exit_us);
    failed += s.status != 0;
  }
  auto row = [](const char* name, const std::vector<double>& v) {
    Percentiles p = percentiles(v);
    fmt::print(stderr, "  {:<28} {:>6} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.0f}\n", name, p.count, p.p50, p.p90, p.p99,
               p.max);
  };
  fmt::print(stderr, "\n{} clones in {:.3f} s ({:.0f} clones/s), {} failed{}\n", samples.size(), wall_s,
             static_cast<double>(samples.size()) / wall_s, failed,
             pool ? fmt::format(", pool: {} shells built ahead, {} on demand", pool->built(), pool->built_on_demand())
                  : std::string(", no pool"));
  fmt::print(stderr, "  {:<28} {:>6} {:>10} {:>10} {:>10} {:>10}\n", "latency (us)", "n", "p50", "p90", "p99", "max");
  row("clone -> first instruction", first);
  row("clone -> personality read", pers);
  row("clone -> command exit", exit);
}

}  // namespace

int cmd_fork(const ForkOptions& o) {
  auto fail = [](const std::string& m) {
    fmt::print(stderr, "vicvmm: error: {}\n", m);
    return kExitVmmError;
  };
  if (o.count == 0) return fail("-n must be at least 1");
  if (o.parallel == 0) return fail("--parallel must be at least 1");
  std::string dir = o.from_dir;
  std::string name = o.name;
  std::optional<ResolvedImage> attach;  // --image: each clone attaches this image's disk
  if (!o.image.empty()) {
    auto img = open_image(o.image);
    if (!img) return fail(img.error().message);
    attach = std::move(*img);
    auto base = ensure_base_template();
    if (!base) return fail(base.error().message);
    name = *base;
  }
  if (dir.empty()) {
    auto p = template_path(name);
    if (!p) return fail(p.error().message);
    dir = *p;
  }
  auto kvm = Kvm::open();
  if (!kvm) return fail(kvm.error().message);
  // A snapshot directory from elsewhere may change under us: a sealed copy.
  auto tmpl = Template::load(dir, detect_host_kind(), true,
                             o.from_dir.empty() ? SnapshotMemory::MapFile : SnapshotMemory::SealedCopy);
  if (!tmpl) {
    if (o.from_dir.empty() && access(dir.c_str(), F_OK) != 0)
      return fail(fmt::format("template '{}' does not exist (create it with: vicvmm template create {})", name,
                              name));
    return fail(tmpl.error().message);
  }

  // A template of an image: the image's Entrypoint/Cmd/Env/WorkingDir/User
  // fill in what the command line leaves out.
  std::vector<std::string> argv = o.command;
  std::vector<std::string> env = default_env(o.env);
  std::string workdir, user;
  auto image_id = read_template_image(dir);
  if (!image_id) return fail(image_id.error().message);
  if (attach && !image_id->empty())
    return fail(fmt::format("template {} is of an image already; --image needs the base template", name));
  if (attach) *image_id = attach->image.id;
  if (!image_id->empty()) {
    auto img = attach ? Result<image::Image>(attach->image) : image_by_id(*image_id);
    if (!img) return fail(fmt::format("template {}: its image: {}", dir, img.error().message));
    image::Overrides ov;
    ov.cmd = o.command;
    ov.env = o.env;
    ov.workdir = o.workdir;
    ov.user = o.user;
    auto p = image::process_spec(img->tags.empty() ? img->id.substr(0, 12) : img->tags.front(), img->config, ov);
    if (!p) return fail(p.error().message);
    argv = p->argv, env = p->env, workdir = p->workdir, user = p->user;
  } else if (o.command.empty()) {
    return fail("fork needs a command after -- (see --help)");
  } else if (o.workdir || o.user) {
    return fail("--workdir and --user need a template of an image (template create --image)");
  }

  // Per clone: the forwards it publishes (clone i takes the i-th port of
  // every range; a single port only works for one clone).
  std::vector<std::vector<net::PortForward>> per_clone(o.count);
  for (const auto& text : o.publish) {
    auto f = net::parse_publish(text);
    if (!f) return fail(f.error().message);
    if (f->size() != o.count)
      return fail(fmt::format("-p {}: {} host port(s) for {} clones (give a range of {} ports)", text, f->size(),
                              o.count, o.count));
    for (unsigned i = 0; i < o.count; ++i) per_clone[i].push_back((*f)[i]);
  }

  std::mutex out_mu;
  CloneOptions copts;
  copts.timeout = std::chrono::seconds(o.timeout_s);
  if (!o.quiet)
    copts.on_console_line = [&](uint32_t id, const std::string& line) {
      std::lock_guard lock(out_mu);
      fmt::print("[{}] {}\n", id, line);
    };

  std::optional<ClonePool> pool;
  if (!o.no_pool) {
    PoolOptions popts;
    popts.target = o.pool_size ? o.pool_size : std::min<unsigned>(o.count, 16);
    popts.limit = o.count;
    popts.clone = copts;
    pool.emplace(*kvm, *tmpl, popts);
    if (auto r = pool->wait_ready(popts.target); !r) return fail(r.error().message);
  }

  std::vector<Sample> samples(o.count);
  std::atomic<unsigned> next{0};
  uint64_t wall0 = monotonic_ns();
  auto worker = [&] {
    for (unsigned i; (i = next.fetch_add(1)) < o.count;) {
      Sample& s = samples[i];
      uint64_t t_req = monotonic_ns();
      auto clone = pool ? pool->acquire() : Clone::create(*kvm, *tmpl, copts);
      if (!clone) {
        s.failure = clone.error().message;
        continue;
      }
      AgentRequest req;
      req.argv = argv;
      req.env = env;
      req.workdir = workdir;
      req.user = user;
      req.clone_id = i + 1;
      req.hostname = fmt::format("clone-{}", i + 1);
      req.seed = fresh_seed();
      req.wallclock_ns = realtime_ns();
      if (attach) req.flags |= VIC_MB_IMAGE_ROOT;
      if (auto a = attach ? (*clone)->attach_image(attach->disk) : Result<>(); !a) {
        s.failure = a.error().message;
      } else if (auto p = (*clone)->publish(per_clone[i]); !p) {
        s.failure = p.error().message;
      } else if (auto r = (*clone)->start(req, t_req); !r) {
        s.failure = r.error().message;
      } else if (auto stop = (*clone)->run(); !stop) {
        s.failure = stop.error().message;
      } else {
        CloneTimes t = (*clone)->times();
        auto us = [&](uint64_t at) { return at > t.requested ? (at - t.requested) / 1e3 : 0.0; };
        s.first_run_us = us(t.first_run);
        s.personality_us = us(t.personality);
        if (stop->reason == StopReason::CommandExited) {
          s.status = stop->exit_status;
          s.exit_us = us(t.stopped);
        } else {
          s.failure = fmt::format("{}: {}", stop_reason_name(stop->reason), stop->detail);
        }
      }
      if (pool) pool->release(std::move(*clone));
    }
  };
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < std::min(o.parallel, o.count); ++w) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  double wall_s = (monotonic_ns() - wall0) / 1e9;

  int rc = 0;
  for (unsigned i = 0; i < o.count; ++i) {
    if (!samples[i].failure.empty()) {
      fmt::print(stderr, "vicvmm: clone {}: {}\n", i + 1, samples[i].failure);
      rc = 1;
    } else if (samples[i].status != 0) {
      rc = 1;
    }
  }
  print_summary(samples, wall_s, pool ? &*pool : nullptr);
  return rc;
}

}  // namespace vicvmm::cli
