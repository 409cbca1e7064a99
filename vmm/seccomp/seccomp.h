// Per-thread seccomp allow-lists. Each kind of thread vicvmm starts confines
// itself once its setup is done: a compromised device model, a parser bug
// reached by a hostile guest or API request, gets only the system calls its
// thread needs. A forbidden call is reported on stderr with the thread's
// kind and the call's name, then the process dies of SIGSYS: the thread
// that made it may be under a guest's control, so it must not go on.
//
// Filters are per thread (no TSYNC): the threads of an embedding program
// are never confined, nor is the thread that calls Machine::run(). A filter
// passes to threads the confined thread creates and to programs it execs,
// so long-lived threads are started before the thread that would create
// them confines itself (ClonePool, serve).
//
// The lists, with why each call is there, are in allow_lists.cc.
#pragma once

#include <functional>
#include <string_view>
#include <thread>

#include "vmm/result.h"

namespace vicvmm::seccomp {

enum class ThreadKind {
  Vcpu,         // KVM_RUN and the exits it handles (device registers, console)
  Io,           // the process's I/O loop: virtio queues, block I/O, console output
  Net,          // libslirp's sockets for every VM's user-mode network
  PoolBuilder,  // builds clone shells ahead of time (new VMs, memslots, devices)
  PoolReaper,   // destroys released clones off the caller's path
  StdinPump,    // copies a clone's stdin into its console
  Exec,         // serve worker: one `docker exec` session's socket
  Api,          // serve: HTTP parsing, the image store, container records
};

const char* kind_name(ThreadKind kind);

// Process-wide switch, on unless turned off (`--seccomp=off`, the C API,
// or VICVMM_SECCOMP=off in the environment). Turn it off before threads
// start; threads already confined stay confined. VICVMM_SECCOMP=log
// allows what the lists lack but has the kernel log each such call
// (dmesg, with the thread's name: vicvmm-vcpu, vicvmm-io, ...).
void set_enabled(bool on);
bool enabled();

// Names the calling thread after `kind` (vicvmm-vcpu, ...; not Api) and
// installs `kind`'s allow-list on it (not when disabled, nor when this
// thread is already confined as `kind`). The filter
// is compiled once per process and kind; installing it is one syscall.
Result<> confine_current_thread(ThreadKind kind);

// For a thread started by a confined thread (it runs under that filter
// already): records its kind for reports; installs nothing.
void note_inherited(ThreadKind kind);

// Starts a thread that confines itself as `kind` and then runs `body`;
// returns once the filter is in place (the thread), or with the reason it
// could not be (and no thread: `body` never runs).
Result<std::thread> start_confined_thread(ThreadKind kind, std::function<void()> body);

// The kind the calling thread was confined as, or nullptr.
const char* current_kind_name();

// For tests: whether `syscall_name` (e.g. "socket") is on `kind`'s list.
bool allows(ThreadKind kind, std::string_view syscall_name);

}  // namespace vicvmm::seccomp
