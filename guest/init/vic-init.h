// What the parts of vic-init share (vic-init.cc, exec_server.cc).
#pragma once

#include <stdint.h>
#include <sys/types.h>

// Bound on argc + envc of any command the agent runs.
inline constexpr uint32_t kMaxStrings = 1024;

// A line on stderr, unless the VMM asked for quiet.
void diag(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void mount_fs(const char* src, const char* dir, const char* type, unsigned long flags, const char* opts);
// In a command's child, before exec: the image's working directory and user
// ("" for either: keep root, stay in /). Exits 126 when they cannot be had.
void become_user_in(const char* user, const char* workdir);
// After execvp failed with `e` inside an image: the image's shell says so.
[[noreturn]] void exec_failed_in_image(char** argv, int e);

// A pseudo-terminal for the command (VIC_MB_TTY): PID 1 keeps `master`
// and carries bytes between it and the stdio ports.
struct CommandTty {
  int master = -1;
  int in = -1, out = -1;  // the stdin and stdout ports
};
// Opens a terminal pair; in the child, makes the slave its controlling
// terminal and stdio. -1 when none can be had.
int open_tty_master();
void become_tty_session(int master);

// PID 1's wait for the container's command: reaps every orphan, and, when
// the exec ports are open (`exec_in`, `exec_out` >= 0), runs the processes
// the host asks for on them (docker exec) meanwhile; with a `tty`, carries
// its bytes. Returns the command's wait status once its output is out.
int wait_for_command(pid_t child, int exec_in, int exec_out, bool image_root, CommandTty tty);
