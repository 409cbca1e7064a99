// `vicvmm serve` in tests: started as a child process with its own state
// directory, reached over its Unix socket, stopped with SIGTERM.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/subprocess.h"

namespace vicvmm::test {


inline int connect_unix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// `vicvmm serve` as a child process, stopped with SIGTERM at the end. Its
// socket and log are in `dir`; its state in `state` (default dir/state).
struct ServeProcess {
  pid_t pid = -1;
  std::string sock, log;
  ServeProcess(const std::string& dir, const std::vector<std::string>& extra_args, std::string state = "") {
    sock = dir + "/docker.sock";
    log = dir + "/serve.log";
    if (state.empty()) state = dir + "/state";
    std::vector<std::string> argv = {vicvmm_bin(), "serve", "--socket", sock};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    pid = fork();
    if (pid == 0) {
      setenv("XDG_STATE_HOME", state.c_str(), 1);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  // `tries` x 50 ms: serve may boot the base template first (a cold boot).
  bool wait_ready(int tries = 200) {
    for (int i = 0; i < tries; ++i) {
      int fd = connect_unix(sock);
      if (fd >= 0) {
        close(fd);
        return true;
      }
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        pid = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  int stop() {
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  ~ServeProcess() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace vicvmm::test
