#include "vmm/parked_threads.h"

#include <future>
#include <thread>

namespace vicvmm {

struct ParkedThreads::Worker {
  std::mutex mu;
  std::condition_variable cv;
  std::function<void()> job;  // set while a job is pending or running
  bool busy = false;
  bool quit = false;
  pthread_t handle{};
  // What the thread was started under: reused only by callers alike.
  const char* creator_kind = nullptr;
  bool seccomp_on = false;
};

ParkedThreads::ParkedThreads(seccomp::ThreadKind kind, size_t max_parked) : kind_(kind), max_parked_(max_parked) {}

ParkedThreads::~ParkedThreads() {
  std::lock_guard lock(mu_);
  for (Worker* w : parked_) {
    std::lock_guard wl(w->mu);
    w->quit = true;
    w->cv.notify_all();  // the thread deletes its Worker as it exits
  }
}

namespace {
ParkedThreads* g_vcpus = nullptr;
}

ParkedThreads& ParkedThreads::vcpus() {
  // Enough for the vCPUs of the clones a process runs at once; more are
  // started when needed and exit after their run.
  static std::once_flag once;
  std::call_once(once, [] {
    g_vcpus = new ParkedThreads(seccomp::ThreadKind::Vcpu, 64);
    // A forked child has none of the parent's threads: it must not wait
    // for them. The lock is held across fork so the list is consistent.
    pthread_atfork([] { g_vcpus->mu_.lock(); }, [] { g_vcpus->mu_.unlock(); },
                   [] {
                     g_vcpus->parked_.clear();  // their Workers leak in the child: a few bytes each
                     g_vcpus->mu_.unlock();
                   });
  });
  return *g_vcpus;
}

void ParkedThreads::worker_main(Worker* w) {
  for (;;) {
    std::unique_lock lock(w->mu);
    w->cv.wait(lock, [w] { return w->busy || w->quit; });
    if (!w->busy) break;  // quit
    auto job = std::move(w->job);
    lock.unlock();
    job();
    job = nullptr;  // what the job captured goes before it counts as done
    lock.lock();
    w->busy = false;
    w->cv.notify_all();
  }
  delete w;
}

Result<ParkedThreads::Worker*> ParkedThreads::start_worker() {
  auto* w = new Worker;
  w->creator_kind = seccomp::current_kind_name();
  w->seccomp_on = seccomp::enabled();
  std::promise<Result<>> confined;
  auto ready = confined.get_future();
  try {
    std::thread([this, w, &confined] {
      w->handle = pthread_self();
      auto c = seccomp::confine_current_thread(kind_);
      bool ok = c.has_value();
      confined.set_value(std::move(c));  // `confined` is gone once the caller has this
      if (ok) worker_main(w);
      else delete w;
    }).detach();
  } catch (const std::system_error& e) {
    delete w;
    return err("{} thread: cannot start one: {}", seccomp::kind_name(kind_), e.what());
  }
  if (auto c = ready.get(); !c) return tl::unexpected(c.error());
  return w;
}

Result<ParkedThreads::Job> ParkedThreads::run(std::function<void()> body) {
  Worker* w = nullptr;
  {
    std::lock_guard lock(mu_);
    const char* kind = seccomp::current_kind_name();
    const bool on = seccomp::enabled();
    for (auto it = parked_.rbegin(); it != parked_.rend(); ++it) {
      if ((*it)->creator_kind == kind && (*it)->seccomp_on == on) {
        w = *it;
        parked_.erase(std::next(it).base());
        break;
      }
    }
  }
  if (!w) {
    auto started = start_worker();
    if (!started) return tl::unexpected(started.error());
    w = *started;
  }
  {
    std::lock_guard lock(w->mu);
    w->job = std::move(body);
    w->busy = true;
  }
  w->cv.notify_all();
  return Job(this, w);
}

Result<> ParkedThreads::prestart(size_t count) {
  while (parked() < std::min(count, max_parked_)) {
    auto w = start_worker();
    if (!w) return tl::unexpected(w.error());
    park(*w);
  }
  return {};
}

size_t ParkedThreads::parked() const {
  std::lock_guard lock(mu_);
  return parked_.size();
}

void ParkedThreads::park(Worker* w) {
  {
    std::lock_guard lock(mu_);
    if (parked_.size() < max_parked_) {
      parked_.push_back(w);
      return;
    }
  }
  std::lock_guard wl(w->mu);
  w->quit = true;
  w->cv.notify_all();
}

void ParkedThreads::Job::join() {
  if (!worker_) return;
  {
    std::unique_lock lock(worker_->mu);
    worker_->cv.wait(lock, [w = worker_] { return !w->busy; });
  }
  owner_->park(worker_);
  worker_ = nullptr;
}

pthread_t ParkedThreads::Job::native_handle() const { return worker_ ? worker_->handle : pthread_t{}; }

}  // namespace vicvmm
