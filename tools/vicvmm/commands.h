// One entry point per vicvmm subcommand (kvmtool style: one source each).
#pragma once

#include <string>
#include <vector>

namespace vicvmm::cli {

struct RunOptions {
  std::string kernel, initrd;   // empty: the default guest
  std::string mem = "128M";
  unsigned vcpus = 1;
  std::string cmdline;          // extra kernel words
  std::string console = "stdout";  // stdout | none | a file path
  std::vector<std::string> env;
  std::string hostname = "vicvmm";
  bool port_doorbell = false;   // agent reports through the I/O port instead of MMIO
  unsigned timeout_s = 0;
  bool stats = false;
  std::vector<std::string> command;
};

int cmd_run(const RunOptions& o, uint64_t process_start_ns);

}  // namespace vicvmm::cli
