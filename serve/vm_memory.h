// What one container VM costs the host, split three ways: pages private to
// it (its copies of pages it wrote, and its VMM's own heap), pages it still
// shares with its template (the template's memory file, mapped MAP_PRIVATE
// and not written), and the kernel memory its VMM process caused (KVM's
// per-VM structures, page tables, slab), which the memory cgroup of its own
// that each worker joins accounts for.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace vicvmm::serve {

struct VmMemory {
  uint64_t private_bytes = 0;  // anonymous resident memory of the VMM process
  uint64_t shared_bytes = 0;   // file-backed resident memory: the template's pages (and the binary)
  std::optional<uint64_t> kernel_bytes;  // the worker's memory cgroup's kernel memory, when there is one
};

// From /proc/PID/smaps_rollup and the process's memory cgroup; zeros for a
// process that is gone.
VmMemory measure_vm_memory(pid_t pid);

// Moves the calling process into a memory cgroup of its own (a child of its
// current one, named vicvmm-PID), so its kernel memory is counted apart.
// cgroup v1 with kernel-memory accounting; false (and nothing changed)
// where that is not available.
bool join_own_memory_cgroup();
// Back to the parent cgroup and the child removed (at the worker's end).
void leave_own_memory_cgroup();
// Removes the empty cgroup a worker that died left behind.
void remove_memory_cgroup_of(pid_t worker_pid);

}  // namespace vicvmm::serve
