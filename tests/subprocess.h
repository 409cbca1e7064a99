// Runs the vicvmm binary as a user would and captures what it prints.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace vicvmm::test {

struct Outcome {
  int status = -1;  // exit code, or 128+signal
  std::string out, err;
};

inline std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

// Runs argv with extra "KEY=VALUE" environment entries, which replace the
// inherited ones of the same name; stdin is `stdin_path`.
inline Outcome run_process(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {},
                           const std::string& stdin_path = "/dev/null") {
  auto key = [](const std::string& kv) { return kv.substr(0, kv.find('=') + 1); };
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    bool replaced = false;
    for (const auto& x : extra_env) replaced = replaced || key(x) == key(kv);
    if (!replaced) env_store.push_back(std::move(kv));
  }
  for (const auto& e : extra_env) env_store.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = argv;
  for (auto& a : argv_store) args.push_back(a.data());
  args.push_back(nullptr);

  // Output goes to temp files, not pipes: no deadlock on large output.
  char out_path[] = "/tmp/vicvmm-test-out-XXXXXX";
  char err_path[] = "/tmp/vicvmm-test-err-XXXXXX";
  int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
  unlink(out_path);
  unlink(err_path);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  pid_t pid;
  Outcome o;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data()) == 0) {
    int st = 0;
    waitpid(pid, &st, 0);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  posix_spawn_file_actions_destroy(&fa);
  lseek(out_fd, 0, SEEK_SET);
  lseek(err_fd, 0, SEEK_SET);
  o.out = read_all(out_fd);
  o.err = read_all(err_fd);
  close(out_fd);
  close(err_fd);
  return o;
}

// The absolute path of a tool on PATH ("" when missing): run_process does
// not search PATH.
inline std::string which(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':'))
    if (!d.empty() && access((d + "/" + tool).c_str(), X_OK) == 0) return d + "/" + tool;
  return "";
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A temporary directory, removed with everything in it at scope end.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    char t[] = "/tmp/vicvmm-test-XXXXXX";
    path = mkdtemp(t);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline std::string vicvmm_bin() {
  const char* b = std::getenv("VICVMM_BIN");
  return b ? b : "build/vicvmm";
}

}  // namespace vicvmm::test
