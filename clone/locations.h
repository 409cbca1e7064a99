// Where vicvmm keeps things on a host: the default guest (built by the
// tools, cached) and the state (templates, images, containers). Here, below
// the CLI, because the library's users (the benchmark harness, serve) need
// the same answers.
#pragma once

#include <string>

#include "vmm/result.h"

namespace vicvmm {

// Where the tools put the default guest: ${XDG_CACHE_HOME:-$HOME/.cache}/vicvmm.
std::string cache_dir();
// $VICVMM_KERNEL, else <cache>/vmlinux; $VICVMM_INITRD, else <cache>/initrd.cpio.
std::string default_kernel();
std::string default_initrd();

// ${XDG_STATE_HOME:-$HOME/.local/state}/vicvmm: templates, images, containers.
std::string state_dir();
// state_dir()/templates
std::string templates_dir();
// templates_dir()/NAME, after checking NAME is [A-Za-z0-9._-]+ without a leading dot.
Result<std::string> template_path(const std::string& name);

}  // namespace vicvmm
