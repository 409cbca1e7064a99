// One entry point per vicvmm subcommand (kvmtool style: one source each).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vicvmm::cli {

struct RunOptions {
  std::string kernel, initrd;   // empty: the default guest
  std::string mem = "128M";
  unsigned vcpus = 1;
  std::string cmdline;          // extra kernel words
  std::string console = "stdout";  // stdout | none | a file path
  std::string console_limit;       // empty: 64M for a file, no cap otherwise
  std::vector<std::string> env;
  std::string hostname = "vicvmm";
  bool port_doorbell = false;   // agent reports through the I/O port instead of MMIO
  bool no_rng = false;          // leave out the virtio-rng device
  std::vector<std::string> disks;  // --disk PATH[,ro|rw], /dev/vda, /dev/vdb, ... in order
  bool net = false;                // virtio-net on user-mode networking (implied by -p)
  std::vector<std::string> publish;  // -p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]
  unsigned timeout_s = 0;
  bool stats = false;
  std::vector<std::string> command;
  // --image IMG: the container image's root filesystem on /dev/vda, its
  // Entrypoint/Cmd/Env/WorkingDir/User unless overridden.
  std::string image;
  std::optional<std::string> workdir, user, entrypoint;
};

int cmd_run(const RunOptions& o, uint64_t process_start_ns);

struct TemplateCreateOptions {
  std::string name;
  std::string kernel, initrd, mem = "128M", cmdline;
  std::string console = "none";  // the template's boot log: none, stdout or a file
  std::string console_limit;     // as for run
  bool force = false;            // replace an existing template
  bool no_rng = false;
  std::vector<std::string> disks;  // --disk PATH,ro: shared by every clone
  unsigned timeout_s = 0;          // 0: the library's default (5 minutes)
  bool net = false;                // a virtio-net; each clone gets its own user-mode network
  std::string image;               // boot with this image as root: clones start in it
  bool image_slot = false;         // an empty disk slot first: each clone attaches an image at start
  bool report_to_stderr = false;   // the "ready" line on stderr (a template made on the way for fork)
};
int cmd_template_create(const TemplateCreateOptions& o);
int cmd_template_ls();
int cmd_template_rm(const std::string& name);

// Copies template NAME to DIR as a self-contained snapshot directory.
int cmd_snapshot(const std::string& name, const std::string& dir);

struct ForkOptions {
  std::string name;      // a template name, or
  std::string from_dir;  // a snapshot directory
  unsigned count = 1;
  unsigned parallel = 1;
  bool no_pool = false;
  unsigned pool_size = 0;  // 0: min(count, 16)
  bool quiet = false;      // no clone output, summary only
  std::vector<std::string> env;
  unsigned timeout_s = 60;
  std::vector<std::string> publish;  // -p; a host port range gives clone i the i-th port
  std::vector<std::string> command;  // of an image's template: may be empty (the image's Cmd)
  std::optional<std::string> workdir, user;  // of an image's template: override the image's
  std::string image;  // --image: clones of the base template, each attaching this image
};
int cmd_fork(const ForkOptions& o);

struct BenchOptions {
  bool quick = false;         // the short suite (< 2 min on the dev machines)
  std::string json, svg;      // output files; empty: none
  std::string template_name;  // load this template instead of booting the default guest
  std::string command_line;   // the invocation, for the reports
  uint64_t soak = 0;          // > 0: the soak instead of the suite, this many cycles
  uint64_t soak_every = 1000; // ... sampled every this many
  // Hidden: run as the suite's "restore from file in a new process" child.
  std::string restore_child, until;
};
int cmd_bench(const BenchOptions& o);

// `vicvmm image ...`: the container image store. MAX_SIZE ("" = default or
// $VICVMM_IMAGE_MAX_SIZE) caps what an input may unpack to.
int cmd_image_load(const std::string& path, const std::string& max_size);
int cmd_image_import(const std::string& path, const std::string& name, const std::string& max_size);
int cmd_image_ls();
int cmd_image_inspect(const std::string& ref);
int cmd_image_rm(const std::string& ref);
int cmd_image_tag(const std::string& ref, const std::string& name);
// Builds (once) and prints the path of the image's EROFS root filesystem.
int cmd_image_disk(const std::string& ref);

// `vicvmm serve`: the Docker Engine API on a Unix socket (and optionally a
// loopback TCP address) until SIGTERM/SIGINT.
struct ServeOptions {
  std::string socket = "/run/vicvmm/docker.sock";  // "" = none (then --http is required)
  std::string group;     // chown the socket to this group (mode 0660)
  std::string http;      // "127.0.0.1:PORT": also listen on loopback TCP
  std::string max_body;  // cap on JSON request bodies ("" = 64M)
  bool containers = true;      // run containers (needs the default guest and /dev/kvm)
  unsigned ready_workers = 2;  // container VMs kept ready (pre-forked workers)
};
int cmd_serve(const ServeOptions& o);

// `vicvmm ps [-a] [--json]`: serve's containers and what each costs.
int cmd_ps(bool all, bool json_out);

}  // namespace vicvmm::cli
