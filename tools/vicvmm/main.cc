// The vicvmm command-line launcher: parses arguments and hands off to one
// cmd_* function per subcommand.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tools/vicvmm/commands.h"
#include "serve/worker.h"
#include "tools/vicvmm/options.h"
#include "vmm/seccomp/seccomp.h"
#include "vmm/machine.h"

#ifndef VICVMM_VERSION
#define VICVMM_VERSION "unknown"
#endif

using namespace vicvmm::cli;

namespace {

// CLI11 names neither an unknown subcommand nor, when a subcommand is
// required, an unknown option: it says "A subcommand is required". Name
// the word before CLI11 sees it.
bool unknown_word(int argc, char** argv, const CLI::App& app) {
  const CLI::App* level = &app;
  for (int i = 1; i < argc; ++i) {
    std::string w = argv[i];
    if (w == "--") return false;
    if (level->get_subcommands({}).empty()) return false;  // a leaf: CLI11 checks the rest
    if (w == "-h" || w == "--help" || w.rfind("--help-", 0) == 0) return false;
    if (!w.empty() && w[0] == '-') {
      if (level == &app && w.rfind("--seccomp", 0) == 0) {  // the one global option
        if (w == "--seccomp") ++i;
        continue;
      }
      if (level == &app) {
        fmt::print(stderr, "vicvmm: error: unknown option '{}' (see --help)\n", w);
        return true;
      }
      return false;
    }
    const CLI::App* next = nullptr;
    for (const CLI::App* s : level->get_subcommands({}))
      if (s->get_name() == w) next = s;
    if (!next) {
      fmt::print(stderr, "vicvmm: error: unknown {}command '{}' (see --help)\n", level == &app ? "sub" : "", w);
      return true;
    }
    level = next;
  }
  return false;
}

int real_main(int argc, char** argv);

}  // namespace

// Output errors must not abort (fmt throws when stderr is closed or full) and
// must not pass unnoticed (`fork ... >/dev/full` used to exit 0).
int main(int argc, char** argv) {
  int rc;
  try {
    rc = real_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vicvmm: error: %s\n", e.what());
    return kExitVmmError;
  } catch (...) {
    return kExitVmmError;
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "vicvmm: error: writing standard output: %s\n", std::strerror(errno));
    return rc == 0 ? kExitVmmError : rc;
  }
  return rc;
}

namespace {

int real_main(int argc, char** argv) {
  uint64_t start = vicvmm::monotonic_ns();

  CLI::App app{"vicvmm: run containers as instantly forked KVM microVMs"};
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("vicvmm: error: ") + e.what() + " (see --help)\n";
  });

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Boot a microVM, run CMD in it, exit with CMD's status");
  run_cmd->add_option("--kernel", run.kernel, "Guest kernel: ELF vmlinux or bzImage (default: the built guest)");
  run_cmd->add_option("--initrd", run.initrd, "Initramfs (cpio); 'none' for no initrd (default: the built guest)");
  run_cmd->add_option("--mem", run.mem, "Guest memory, e.g. 128M or 1G")->capture_default_str();
  run_cmd->add_option("--vcpus", run.vcpus, "Number of vCPUs")->capture_default_str();
  run_cmd->add_option("--cmdline", run.cmdline, "Extra kernel command-line words");
  run_cmd->add_option("--console", run.console, "Guest console: stdout, none, or a file path")->capture_default_str();
  run_cmd->add_option("--console-limit", run.console_limit,
                      "Write at most SIZE bytes of console output, then drop the rest (default: 64M for a file, "
                      "no limit for stdout; 0: no limit)");
  run_cmd->add_option("-e,--env", run.env, "Environment variable KEY=VALUE for CMD (repeatable)")->allow_extra_args(false);
  run_cmd->add_option("--hostname", run.hostname, "Guest hostname")->capture_default_str();
  run_cmd->add_flag("--port-doorbell", run.port_doorbell, "Agent reports through an I/O port instead of MMIO");
  run_cmd->add_flag("--no-rng", run.no_rng, "No virtio-rng device (the guest's /dev/hwrng)");
  run_cmd->add_flag("--net", run.net, "A virtio-net on user-mode networking (NAT, guest 10.0.2.15, host 10.0.2.2)");
  run_cmd->add_option("-p,--publish", run.publish,
                      "Publish a guest port: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp] (repeatable; implies --net; "
                      "HOSTIP defaults to 127.0.0.1)")->allow_extra_args(false);
  run_cmd->add_option("--disk", run.disks,
                      "Raw disk image PATH[,ro|rw] on virtio-blk: /dev/vda, /dev/vdb, ... in order (repeatable; "
                      "default rw, locked so no other VM uses it)")->allow_extra_args(false);
  run_cmd->add_option("--timeout", run.timeout_s, "Stop the guest after this many seconds (0: never)");
  run_cmd->add_flag("--stats", run.stats, "Print exit counters, host assists and timings to stderr");
  run_cmd->add_option("--image", run.image, "Run in this container image (vicvmm image ls): its root filesystem, "
                      "Entrypoint, Cmd, Env, WorkingDir and User");
  std::string run_workdir, run_user, run_entrypoint;
  auto* run_w = run_cmd->add_option("-w,--workdir", run_workdir, "Working directory inside the image");
  auto* run_u = run_cmd->add_option("-u,--user", run_user, "User inside the image: uid[:gid] or name[:group]");
  auto* run_ep = run_cmd->add_option("--entrypoint", run_entrypoint, "Replace the image's Entrypoint ('' clears it)");
  run_cmd->add_option("command", run.command, "Command and arguments to run in the guest (after --)");
  run_cmd->positionals_at_end();

  auto* tmpl_cmd = app.add_subcommand("template", "Create, list and remove templates (booted, paused guests)");
  tmpl_cmd->require_subcommand(1);
  TemplateCreateOptions tc;
  auto* tc_cmd = tmpl_cmd->add_subcommand("create", "Boot the guest once and keep it as template NAME");
  tc_cmd->add_option("name", tc.name, "Template name")->required();
  tc_cmd->add_option("--kernel", tc.kernel, "Guest kernel (default: the built guest)");
  tc_cmd->add_option("--initrd", tc.initrd, "Initramfs (default: the built guest)");
  tc_cmd->add_option("--mem", tc.mem, "Guest memory")->capture_default_str();
  tc_cmd->add_option("--cmdline", tc.cmdline, "Extra kernel command-line words");
  tc_cmd->add_option("--console", tc.console, "Boot log: none, stdout or a file")->capture_default_str();
  tc_cmd->add_option("--console-limit", tc.console_limit, "As for run: cap on the boot log's size");
  tc_cmd->add_flag("--force", tc.force, "Replace an existing template");
  tc_cmd->add_flag("--no-rng", tc.no_rng, "No virtio-rng device");
  tc_cmd->add_flag("--net", tc.net, "A virtio-net: each clone gets its own user-mode network (same address in all)");
  tc_cmd->add_option("--timeout", tc.timeout_s, "Give up on the boot after this many seconds (default 300)");
  tc_cmd->add_option("--disk", tc.disks,
                     "Raw disk image PATH,ro on virtio-blk (repeatable); read-only: every clone shares it")->allow_extra_args(false);
  tc_cmd->add_flag("--image-slot", tc.image_slot, "An empty read-only disk slot that each clone can fill with an "
                   "image (fork --image uses such a base template)");
  tc_cmd->add_option("--image", tc.image, "Boot with this container image as root: clones start in it, parked "
                     "after the mounts, and share its page cache");
  auto* tl_cmd = tmpl_cmd->add_subcommand("ls", "List templates");
  std::string rm_name;
  auto* tr_cmd = tmpl_cmd->add_subcommand("rm", "Remove a template");
  tr_cmd->add_option("name", rm_name, "Template name")->required();

  std::string snap_name, snap_dir;
  auto* snap_cmd = app.add_subcommand("snapshot", "Write template NAME to DIR as a snapshot directory");
  snap_cmd->add_option("name", snap_name, "Template name")->required();
  snap_cmd->add_option("dir", snap_dir, "Destination directory (must not exist)")->required();

  ForkOptions fork;
  auto* fork_cmd = app.add_subcommand("fork", "Run CMD in N copy-on-write clones of a template");
  fork_cmd->add_option("name", fork.name, "Template name");
  fork_cmd->add_option("--from", fork.from_dir, "Clone from a snapshot directory instead of a template");
  fork_cmd->add_option("-n", fork.count, "Number of clones")->capture_default_str();
  fork_cmd->add_option("--parallel", fork.parallel, "Clones running at once")->capture_default_str();
  fork_cmd->add_flag("--no-pool", fork.no_pool, "Build each clone's VM on demand instead of from a pool");
  fork_cmd->add_option("--pool-size", fork.pool_size, "Shells kept ready (default: min(n, 16))");
  fork_cmd->add_flag("--quiet", fork.quiet, "Print only the summary, not the clones' output");
  fork_cmd->add_option("-e,--env", fork.env, "Environment variable KEY=VALUE (repeatable)")->allow_extra_args(false);
  fork_cmd->add_option("--timeout", fork.timeout_s, "Per-clone timeout in seconds")->capture_default_str();
  fork_cmd->add_option("-p,--publish", fork.publish,
                       "Publish a guest port per clone: [HOSTIP:]HOSTPORT[-LAST]:GUESTPORT[/tcp|udp]; a range "
                       "gives clone i its i-th port (repeatable; the template needs --net)")->allow_extra_args(false);
  fork_cmd->add_option("--image", fork.image, "Clone a container image from the base template (booted once with an "
                       "empty disk slot; each clone attaches the image's disk at start)");
  std::string fork_workdir, fork_user;
  auto* fork_w = fork_cmd->add_option("-w,--workdir", fork_workdir, "Working directory (a template of an image)");
  auto* fork_u = fork_cmd->add_option("-u,--user", fork_user, "User uid[:gid] or name[:group] (a template of an image)");
  fork_cmd->add_option("command", fork.command, "Command and arguments (after --)");

  BenchOptions bench;
  std::vector<std::string> bench_child;
  auto* bench_cmd = app.add_subcommand("bench", "Run the benchmark suite: clone latency, throughput, density, reset");
  bench_cmd->add_flag("--quick", bench.quick, "Short run (fewer samples, one cold boot)");
  bench_cmd->add_option("--json", bench.json, "Write Google Benchmark JSON to FILE");
  bench_cmd->add_option("--svg", bench.svg, "Write an SVG of the latency CDFs and the density curve to FILE");
  bench_cmd->add_option("--template", bench.template_name, "Use saved template NAME instead of booting the default guest");
  bench_cmd->add_option("--soak", bench.soak,
                        "Instead of the suite: N clone/start/run/destroy cycles of the tiny guest in one process, "
                        "sampling open fds, RSS and host kernel memory (a leak check; --svg plots it)");
  bench_cmd->add_option("--soak-every", bench.soak_every, "Cycles between soak samples (default 1000)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  bench_cmd->add_option("--restore-child", bench_child, "(internal) DIR UNTIL")->expected(2)->group("");

  // `image`: the container image store.
  auto* image_cmd = app.add_subcommand("image", "Load, import, list, inspect, tag and remove container images");
  image_cmd->require_subcommand(1);
  std::string image_path, image_ref, image_name, image_max_size;
  const char* max_size_help = "Refuse input that unpacks to more than SIZE (default 16G or $VICVMM_IMAGE_MAX_SIZE)";
  auto* il_cmd = image_cmd->add_subcommand("load", "Load a docker-archive or OCI layout (dir or tar; '-': stdin)");
  il_cmd->add_option("file", image_path, "docker save / podman save / skopeo output, or '-'")->required();
  il_cmd->add_option("--max-size", image_max_size, max_size_help);
  auto* ii_cmd = image_cmd->add_subcommand("import", "Make a one-layer image from a root filesystem tar or directory");
  ii_cmd->add_option("source", image_path, "Tar (any compression) or directory")->required();
  ii_cmd->add_option("name", image_name, "NAME[:TAG] (default tag: latest)")->required();
  ii_cmd->add_option("--max-size", image_max_size, max_size_help);
  auto* ils_cmd = image_cmd->add_subcommand("ls", "List images");
  auto* iin_cmd = image_cmd->add_subcommand("inspect", "Print an image's record as JSON");
  iin_cmd->add_option("image", image_ref, "NAME[:TAG], ID or ID prefix")->required();
  auto* irm_cmd = image_cmd->add_subcommand("rm", "Remove a tag, or the image with its last tag (not while a template uses it)");
  irm_cmd->add_option("image", image_ref, "NAME[:TAG], ID or ID prefix")->required();
  auto* itag_cmd = image_cmd->add_subcommand("tag", "Give an image another NAME[:TAG]");
  itag_cmd->add_option("image", image_ref, "NAME[:TAG], ID or ID prefix")->required();
  itag_cmd->add_option("name", image_name, "New NAME[:TAG]")->required();
  auto* idisk_cmd = image_cmd->add_subcommand("disk", "Build (once) and print the image's EROFS root filesystem");
  idisk_cmd->add_option("image", image_ref, "NAME[:TAG], ID or ID prefix")->required();

  bool ps_all = false, ps_json = false;
  auto* ps_cmd = app.add_subcommand("ps", "List serve's container VMs and what each costs (private, shared, kernel memory)");
  ps_cmd->add_flag("-a,--all", ps_all, "Also the stopped ones");
  ps_cmd->add_flag("--json", ps_json, "The figures as JSON (what /ui shows)");

  // Internal: one container VM's process, started by `serve` (serve/worker.h).
  std::string worker_template;
  auto* worker_cmd = app.add_subcommand("__worker", "")->group("");
  worker_cmd->add_option("template", worker_template, "")->required();

  ServeOptions serve;
  auto* serve_cmd = app.add_subcommand("serve", "Serve the Docker Engine API (1.41) so the docker CLI can drive vicvmm");
  serve_cmd->add_option("--socket", serve.socket, "Unix socket to listen on ('' for none)")->capture_default_str();
  serve_cmd->add_option("--group", serve.group, "Group that may use the socket (mode 0660)");
  serve_cmd->add_option("--http", serve.http, "Also listen on this loopback TCP address, e.g. 127.0.0.1:2375");
  serve_cmd->add_option("--max-body", serve.max_body, "Largest JSON request body (default 64M)");
  serve_cmd->add_option("--ready", serve.ready_workers, "Container VMs kept ready, each in its own process")
      ->capture_default_str();
  bool no_containers = false;
  serve_cmd->add_flag("--no-containers", no_containers, "Images only: no base template, no container VMs");

  auto* version_cmd = app.add_subcommand("version", "Print the vicvmm version");

  std::string seccomp_mode = "on";
  app.add_option("--seccomp", seccomp_mode,
                 "on: each thread vicvmm starts runs under its own seccomp allow-list (a forbidden call "
                 "stops the process with SIGSYS, naming it); off: no filters, to debug (also VICVMM_SECCOMP=off)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();

  if (unknown_word(argc, argv, app)) return kExitVmmError;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (seccomp_mode == "off") {
    vicvmm::seccomp::set_enabled(false);
    setenv("VICVMM_SECCOMP", "off", 1);  // and in serve's worker processes
  }

  if (*run_cmd) {
    if (run_w->count()) run.workdir = run_workdir;
    if (run_u->count()) run.user = run_user;
    if (run_ep->count()) run.entrypoint = run_entrypoint;
    return cmd_run(run, start);
  }
  if (*tc_cmd) return cmd_template_create(tc);
  if (*tl_cmd) return cmd_template_ls();
  if (*tr_cmd) return cmd_template_rm(rm_name);
  if (*snap_cmd) return cmd_snapshot(snap_name, snap_dir);
  if (*fork_cmd) {
    // With --from or --image there is no NAME: CLI11 fills positionals in
    // order, so the command's first word landed in `name`.
    const std::string source = !fork.from_dir.empty() ? "--from " + fork.from_dir : "--image " + fork.image;
    if ((!fork.from_dir.empty() || !fork.image.empty()) && !fork.name.empty()) {
      // Before `--` (or with no `--`), it was meant as a template name or is
      // a command that could be taken for one: refuse rather than guess.
      bool before_dashes = false, dashes = false;
      for (int i = 1; i < argc && !dashes; ++i) {
        dashes = std::string(argv[i]) == "--";
        before_dashes |= !dashes && argv[i] == fork.name;
      }
      if (before_dashes || !dashes) {
        fmt::print(stderr,
                   "vicvmm: error: fork takes a template NAME, --from DIR or --image IMG, not two ('{}' and {}); "
                   "a command goes after --\n",
                   fork.name, source);
        return kExitVmmError;
      }
      fork.command.insert(fork.command.begin(), fork.name);
      fork.name.clear();
    }
    if (fork_w->count()) fork.workdir = fork_workdir;
    if (fork_u->count()) fork.user = fork_user;
    if (int given = !fork.name.empty() + !fork.from_dir.empty() + !fork.image.empty(); given != 1) {
      fmt::print(stderr, "vicvmm: error: fork needs one of a template NAME, --from DIR or --image IMG{}\n",
                 given ? fmt::format(" (not both {} and {})", fork.from_dir.empty() ? "NAME" : "--from", source) : "");
      return kExitVmmError;
    }
    return cmd_fork(fork);
  }
  if (*bench_cmd) {
    if (bench_child.size() == 2) {
      bench.restore_child = bench_child[0];
      bench.until = bench_child[1];
    }
    for (int i = 0; i < argc; ++i) bench.command_line += (i ? " " : "") + std::string(argv[i]);
    return cmd_bench(bench);
  }
  if (*il_cmd) return cmd_image_load(image_path, image_max_size);
  if (*ii_cmd) return cmd_image_import(image_path, image_name, image_max_size);
  if (*ils_cmd) return cmd_image_ls();
  if (*iin_cmd) return cmd_image_inspect(image_ref);
  if (*irm_cmd) return cmd_image_rm(image_ref);
  if (*itag_cmd) return cmd_image_tag(image_ref, image_name);
  if (*idisk_cmd) return cmd_image_disk(image_ref);
  if (*serve_cmd) {
    serve.containers = !no_containers;
    return cmd_serve(serve);
  }
  if (*ps_cmd) return cmd_ps(ps_all, ps_json);
  if (*worker_cmd) return vicvmm::serve::worker_main(vicvmm::serve::kWorkerControlFd, worker_template);
  if (*version_cmd) {
    fmt::print("vicvmm {}\n", VICVMM_VERSION);
    return 0;
  }
  return kExitVmmError;
}

}  // namespace
