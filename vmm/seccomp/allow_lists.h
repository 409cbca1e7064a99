// The allow-lists behind seccomp.h: syscall names with the reason each is
// needed, per kind of thread, plus which ioctls the kind may issue.
#pragma once

#include <span>

#include "vmm/seccomp/seccomp.h"

namespace vicvmm::seccomp {

struct Allowed {
  const char* syscall;  // libseccomp's name for it
  const char* why;
};

// Which ioctl requests a kind's "ioctl" entry admits: the request's type
// byte (bits 8-15), so a thread that only talks to KVM cannot issue a
// terminal or filesystem ioctl.
enum class IoctlClass { Kvm, Tty };

std::span<const Allowed> base_list();          // every kind
std::span<const Allowed> kind_list(ThreadKind kind);  // on top of the base
IoctlClass ioctl_class(ThreadKind kind);

}  // namespace vicvmm::seccomp
