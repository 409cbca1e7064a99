// The vicvmm command-line launcher: parses arguments and hands off to one
// cmd_* function per subcommand.
#include <CLI/CLI.hpp>

#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/options.h"
#include "vmm/machine.h"

#ifndef VICVMM_VERSION
#define VICVMM_VERSION "unknown"
#endif

using namespace vicvmm::cli;

int main(int argc, char** argv) {
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
  run_cmd->add_option("--env", run.env, "Environment variable KEY=VALUE for CMD (repeatable)");
  run_cmd->add_option("--hostname", run.hostname, "Guest hostname")->capture_default_str();
  run_cmd->add_flag("--port-doorbell", run.port_doorbell, "Agent reports through an I/O port instead of MMIO");
  run_cmd->add_option("--timeout", run.timeout_s, "Stop the guest after this many seconds (0: never)");
  run_cmd->add_flag("--stats", run.stats, "Print exit counters, host assists and timings to stderr");
  run_cmd->add_option("command", run.command, "Command and arguments to run in the guest (after --)");
  run_cmd->positionals_at_end();

  auto* version_cmd = app.add_subcommand("version", "Print the vicvmm version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*run_cmd) return cmd_run(run, start);
  if (*version_cmd) {
    fmt::print("vicvmm {}\n", VICVMM_VERSION);
    return 0;
  }
  return kExitVmmError;
}
