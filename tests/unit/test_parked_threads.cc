// Parked vCPU threads: started and confined once, reused by later runs
// (that is their point: a clone's run must not pay a thread start and a
// seccomp filter), never handed to a caller under another filter.
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "vmm/parked_threads.h"
#include "vmm/seccomp/seccomp.h"

using namespace vicvmm;

namespace {
// Runs one job and returns the thread it ran on and the kind it ran under.
std::pair<pthread_t, std::string> run_one(ParkedThreads& threads) {
  pthread_t ran_on{};
  std::string kind;
  auto job = threads.run([&] {
    ran_on = pthread_self();
    const char* k = seccomp::current_kind_name();
    kind = k ? k : "";
  });
  REQUIRE(job.has_value());
  job->join();
  return {ran_on, kind};
}
}  // namespace

TEST_CASE("parked threads: a finished job's thread runs the next one, confined as its kind", "[parked]") {
  seccomp::set_enabled(true);
  ParkedThreads threads(seccomp::ThreadKind::Vcpu, 4);
  CHECK(threads.parked() == 0);
  auto [first, kind] = run_one(threads);
  CHECK(kind == "vcpu");
  CHECK(threads.parked() == 1);
  auto [second, kind2] = run_one(threads);
  CHECK(pthread_equal(first, second));
  CHECK(kind2 == "vcpu");
  CHECK(!pthread_equal(first, pthread_self()));
}

TEST_CASE("parked threads: concurrent jobs get threads of their own; at most max_parked stay", "[parked]") {
  seccomp::set_enabled(true);
  ParkedThreads threads(seccomp::ThreadKind::Vcpu, 2);
  std::atomic<int> started{0};
  std::atomic<bool> release{false};
  pthread_t ids[3]{};
  std::vector<ParkedThreads::Job> jobs;
  for (int i = 0; i < 3; ++i) {
    auto job = threads.run([&, i] {
      ids[i] = pthread_self();
      started.fetch_add(1);
      while (!release.load()) usleep(100);
    });
    REQUIRE(job.has_value());
    jobs.push_back(std::move(*job));
  }
  while (started.load() < 3) usleep(100);  // all three at once: three threads
  CHECK(!pthread_equal(ids[0], ids[1]));
  CHECK(!pthread_equal(ids[1], ids[2]));
  CHECK(!pthread_equal(ids[0], ids[2]));
  CHECK(pthread_equal(jobs[1].native_handle(), ids[1]));
  release = true;
  for (auto& j : jobs) j.join();
  CHECK(threads.parked() == 2);  // the third exited
}

TEST_CASE("parked threads: prestart parks threads ahead, up to the limit", "[parked]") {
  seccomp::set_enabled(true);
  ParkedThreads threads(seccomp::ThreadKind::Vcpu, 3);
  REQUIRE(threads.prestart(2).has_value());
  CHECK(threads.parked() == 2);
  REQUIRE(threads.prestart(10).has_value());
  CHECK(threads.parked() == 3);
  run_one(threads);  // takes a parked thread and gives it back
  CHECK(threads.parked() == 3);
}

TEST_CASE("parked threads: a thread confined while seccomp was on is not reused once it is off", "[parked]") {
  seccomp::set_enabled(true);
  ParkedThreads threads(seccomp::ThreadKind::Vcpu, 4);
  auto [confined, kind] = run_one(threads);
  CHECK(kind == "vcpu");
  seccomp::set_enabled(false);
  auto [plain, plain_kind] = run_one(threads);
  seccomp::set_enabled(true);
  CHECK(!pthread_equal(confined, plain));
  CHECK(plain_kind.empty());  // not confined
  CHECK(threads.parked() == 2);
}

TEST_CASE("parked threads: a forked child starts its own thread instead of waiting for the parent's", "[parked]") {
  seccomp::set_enabled(true);
  auto& vcpus = ParkedThreads::vcpus();
  REQUIRE(vcpus.prestart(1).has_value());
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The parent's parked thread does not exist here; alarm() ends a hang.
    alarm(10);
    if (vcpus.parked() != 0) _exit(2);
    std::atomic<bool> ran{false};
    auto job = vcpus.run([&] { ran = true; });
    if (!job) _exit(3);
    job->join();
    _exit(ran ? 0 : 4);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
