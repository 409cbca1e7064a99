// The clone engine on a tiny guest (guest/tests/clone_template.S): a template
// captured at the guest's TEMPLATE doorbell, clones that resume there with
// their own personality, copy-on-write isolation, the sealed template memory,
// exact dirty-page accounting, reset, snapshots and the shell pool.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "clone/clone.h"
#include "clone/pool.h"
#include "clone/snapshot.h"
#include "clone/template.h"
#include "guest/abi/vicvmm_abi.h"
#include "tests/kvm/harness.h"
#include "vmm/unique_fd.h"

using namespace vicvmm;
using namespace vicvmm::test;

// The guest's mirrors of the mailbox ABI.
static_assert(TG_EV_READY == VIC_EV_READY && TG_EV_TEMPLATE == VIC_EV_TEMPLATE);
static_assert(TG_MAILBOX_GPA == VIC_MAILBOX_GPA);
static_assert(TG_MAILBOX_MAGIC == VIC_MAILBOX_MAGIC);
static_assert(TG_MB_MAGIC == offsetof(vic_mailbox, magic));
static_assert(TG_MB_CLONE_ID == offsetof(vic_mailbox, clone_id));
static_assert(TG_MB_SEED == offsetof(vic_mailbox, seed));
static_assert(TG_MB_GENERATION == offsetof(vic_mailbox, generation));
// Every page the guest touches is RAM of the tiny machine, outside the code,
// results and mailbox pages.
static_assert(TC_FRESH_GPA + 0x1000 <= kTinyMemSize && TC_PATTERN2_GPA + 0x1000 <= kTinyMemSize);
static_assert(TC_STATUS_BASE + TC_STATUS_MOD <= 255);

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kStampedPages[] = {TC_PATTERN1_GPA, TC_READONLY_GPA, TC_FRESH_GPA};
constexpr uint64_t kPatternPages[] = {TC_PATTERN0_GPA, TC_PATTERN1_GPA, TC_PATTERN2_GPA};

int expected_status(uint32_t id) { return TC_STATUS_BASE + static_cast<int>(id % TC_STATUS_MOD); }

uint64_t seed_for(uint32_t id) { return 0x5eed'0000'0000'0000ull ^ (uint64_t{id} * 0x9e37'79b9'7f4a'7c15ull); }

AgentRequest personality(uint32_t id) {
  AgentRequest r;
  r.clone_id = id;
  r.seed = {seed_for(id), ~seed_for(id), id, 0};
  r.hostname = "tiny-" + std::to_string(id);
  return r;
}

// Exactly the pages a clone of clone_template owns after its run: the three
// stamped pages (guest writes) and the mailbox (written by Clone::start).
std::vector<uint64_t> expected_dirty_pages() {
  std::vector<uint64_t> v = {VIC_MAILBOX_GPA / kPage};
  for (uint64_t gpa : kStampedPages) v.push_back(gpa / kPage);
  std::sort(v.begin(), v.end());
  return v;
}

uint64_t pattern_at(uint64_t gpa) { return gpa ^ TC_PATTERN_XOR; }

bool is_stamp_offset(uint64_t off) {
  return off == TC_S_CLONE_ID || off == TC_S_SEED0 || off == TC_S_TAG || off == TC_S_NOT_ID;
}

// A read-only view of some guest RAM image: the template's memory file or a
// clone's guest memory.
class Image {
 public:
  virtual ~Image() = default;
  virtual const uint8_t* at(uint64_t gpa) const = 0;
  uint64_t u64(uint64_t gpa) const {
    uint64_t v;
    std::memcpy(&v, at(gpa), sizeof v);
    return v;
  }
};

// The template's memory file, mapped PROT_READ / MAP_SHARED.
class FileImage : public Image {
 public:
  FileImage(int fd, uint64_t size) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    INFO("mmap of the template memory: " << std::strerror(errno));
    REQUIRE(p != MAP_FAILED);
    map_ = Mapping(p, size);
  }
  explicit FileImage(const Template& t) : FileImage(t.memory_fd(), t.mem_size()) {}
  const uint8_t* at(uint64_t gpa) const override { return map_.bytes() + gpa; }
  size_t size() const { return map_.size(); }

 private:
  Mapping map_;
};

class CloneImage : public Image {
 public:
  explicit CloneImage(Clone& c) : mem_(c.machine().memory()) {}
  const uint8_t* at(uint64_t gpa) const override {
    auto p = mem_.host_ptr(gpa, 8);
    REQUIRE_OK(p);
    return *p;
  }

 private:
  const GuestMemory& mem_;
};

// What the template holds, as the guest left it at the template point.
void check_template_content(const Image& img) {
  for (uint64_t page : kPatternPages) {
    CAPTURE(page);
    bool ok = true;
    for (uint64_t off = 0; off < kPage && ok; off += 8) ok = img.u64(page + off) == pattern_at(page + off);
    CHECK(ok);
  }
  CHECK(img.u64(TC_READONLY_GPA) == TC_READONLY_MAGIC);
  bool zero = true;
  for (uint64_t off = 8; off < kPage; off += 8) zero = zero && img.u64(TC_READONLY_GPA + off) == 0;
  for (uint64_t off = 0; off < kPage; off += 8) zero = zero && img.u64(TC_FRESH_GPA + off) == 0;
  CHECK(zero);
}

// What clone `id` leaves in memory: stamps on the three stamped pages, the
// template content everywhere else on the pages the guest touched.
void check_clone_content(const Image& img, uint32_t id) {
  for (uint64_t page : kStampedPages) {
    CAPTURE(page, id);
    CHECK(img.u64(page + TC_S_CLONE_ID) == id);
    CHECK(img.u64(page + TC_S_SEED0) == seed_for(id));
    CHECK(img.u64(page + TC_S_TAG) == (TC_WRITE_TAG ^ page));
    CHECK(img.u64(page + TC_S_NOT_ID) == ~uint64_t{id});
  }
  for (uint64_t page : kPatternPages) {
    CAPTURE(page);
    bool ok = true;
    for (uint64_t off = 0; off < kPage && ok; off += 8)
      if (page != TC_PATTERN1_GPA || !is_stamp_offset(off)) ok = img.u64(page + off) == pattern_at(page + off);
    CHECK(ok);
  }
}

bool same_page(const Image& a, const Image& b, uint64_t gpa) { return std::memcmp(a.at(gpa), b.at(gpa), kPage) == 0; }

// Boots clone_template on shared-memfd RAM to its TEMPLATE doorbell and captures it.
// `marker` goes into a page the guest never touches, to tell templates apart.
std::shared_ptr<const Template> make_template(uint64_t marker = 0) {
  MachineConfig cfg = tiny_config();
  cfg.backing = Backing::SharedMemfd;
  // The template's state includes the in-kernel irqchip and PIT, which every
  // clone has; the guest never enables interrupts, so HLT stays out of it.
  cfg.irqchip = true;
  auto m = boot_guest(cfg, "clone_template");
  REQUIRE_OK(m->memory().write_obj(TC_READONLY_GPA, uint64_t{TC_READONLY_MAGIC}));
  if (marker) REQUIRE_OK(m->memory().write_obj(kTinyMemSize / 2, marker));
  auto run = run_guest(*m);
  INFO("the template guest stopped with " << run.stop.reason << " (" << run.stop.detail << ")");
  REQUIRE(run.stop.reason == StopReason::TemplateReady);
  auto t = Template::capture(kvm(), std::move(m));
  REQUIRE_OK(t);
  return *t;
}

// One template shared by the tests that do not care which one they get.
const std::shared_ptr<const Template>& shared_template() {
  static const std::shared_ptr<const Template> t = make_template();
  return t;
}

CloneOptions clone_options() {
  CloneOptions o;
  o.timeout = kSafetyTimeout;
  return o;
}

std::unique_ptr<Clone> make_clone(const std::shared_ptr<const Template>& t, const CloneOptions& opts = clone_options()) {
  auto c = Clone::create(kvm(), t, opts);
  REQUIRE_OK(c);
  return std::move(*c);
}

StopInfo run_clone(Clone& c) {
  auto r = c.run();
  REQUIRE_OK(r);
  INFO("clone " << c.id() << " stopped with " << r->reason << " (" << r->detail << ")");
  REQUIRE(r->reason == StopReason::CommandExited);
  return *r;
}

double us(uint64_t from, uint64_t to) { return from && to >= from ? static_cast<double>(to - from) / 1e3 : -1; }

// kB of anonymous (copied-on-write) memory in this process's mapping that
// starts at `addr`, from /proc/self/smaps; -1 when there is no such mapping.
long anonymous_kb(const void* addr) {
  std::ifstream in("/proc/self/smaps");
  const auto start = reinterpret_cast<uintptr_t>(addr);
  std::string line;
  bool in_vma = false;
  while (std::getline(in, line)) {
    unsigned long s = 0, e = 0;
    char dash = 0;
    if (std::sscanf(line.c_str(), "%lx%c%lx ", &s, &dash, &e) == 3 && dash == '-') {
      in_vma = s == start;
      continue;
    }
    long kb = 0;
    if (in_vma && std::sscanf(line.c_str(), "Anonymous: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A temp directory removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vicvmm-clone-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

void flip_byte(const std::string& path, off_t off) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE(fd.valid());
  uint8_t b = 0;
  REQUIRE(pread(fd.get(), &b, 1, off) == 1);
  b ^= 0x5a;
  REQUIRE(pwrite(fd.get(), &b, 1, off) == 1);
}

// The result of one clone's life on another thread (Catch2 assertions are
// not thread-safe: the main thread checks these).
struct Outcome {
  std::string error;
  StopReason reason = StopReason::None;
  int status = -1;
  uint32_t id = 0;
  uint64_t stamped_id = 0;
};

Outcome clone_life(Result<std::unique_ptr<Clone>> created, uint32_t id) {
  Outcome o;
  if (!created) {
    o.error = "create: " + created.error().message;
    return o;
  }
  Clone& c = **created;
  if (auto r = c.start(personality(id)); !r) {
    o.error = "start: " + r.error().message;
    return o;
  }
  auto stop = c.run();
  if (!stop) {
    o.error = "run: " + stop.error().message;
    return o;
  }
  o.reason = stop->reason;
  o.status = stop->exit_status;
  o.id = c.id();
  auto v = c.machine().memory().read_obj<uint64_t>(TC_FRESH_GPA + TC_S_CLONE_ID);
  o.stamped_id = v ? *v : ~0ull;
  return o;
}

void check_outcomes(const std::vector<Outcome>& outcomes, const std::vector<uint32_t>& ids) {
  REQUIRE(outcomes.size() == ids.size());
  std::set<int> statuses;
  for (size_t i = 0; i < ids.size(); ++i) {
    const Outcome& o = outcomes[i];
    CAPTURE(i, ids[i], o.error, o.reason);
    CHECK(o.error.empty());
    CHECK(o.reason == StopReason::CommandExited);
    CHECK(o.status == expected_status(ids[i]));
    CHECK(o.id == ids[i]);
    CHECK(o.stamped_id == ids[i]);
    statuses.insert(o.status);
  }
  CHECK(statuses.size() == ids.size());
}

// A no-op console callback whose copies count themselves: every live clone
// shell holds copies (in its MachineConfig), so the count and the threads
// that destroyed copies show when and where shells die.
struct LifeProbe {
  static inline std::atomic<long> live{0};
  static inline std::mutex mu;
  static inline std::map<std::thread::id, long> destroyed_on;

  LifeProbe() { ++live; }
  LifeProbe(const LifeProbe&) { ++live; }
  LifeProbe(LifeProbe&&) noexcept { ++live; }
  LifeProbe& operator=(const LifeProbe&) = default;
  ~LifeProbe() {
    --live;
    std::lock_guard lock(mu);
    ++destroyed_on[std::this_thread::get_id()];
  }
  void operator()(uint32_t, const std::string&) const {}

  static long destroyed_on_this_thread() {
    std::lock_guard lock(mu);
    return destroyed_on[std::this_thread::get_id()];
  }
};

// Polls `pred` for up to 10 s.
template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace

TEST_CASE("clone: a clone resumes exactly where the template stopped", "[kvm][clone]") {
  auto t = make_template();
  FileImage tmem(*t);
  const TemplateState& s = t->state();

  // The captured vCPU is just past the TEMPLATE store, at the guest's `resume`.
  const uint64_t resume_rip = tmem.u64(TG_RESULT_GPA + TC_R_RESUME_RIP);
  CHECK(resume_rip > TG_LOAD_GPA);
  CHECK(resume_rip < TG_LOAD_GPA + kPage);
  CHECK(s.vcpu.regs.rip == resume_rip);
  CHECK(s.vcpu.regs.rbx == TC_RBX);
  CHECK(s.vcpu.regs.r15 == TC_R15);
  CHECK(s.mem_size == kTinyMemSize);
  CHECK(s.host == detect_host_kind());
  check_template_content(tmem);

  auto c = make_clone(t);
  REQUIRE_OK(c->start(personality(7)));
  CHECK(c->id() == 7u);
  auto regs = c->machine().vcpu(0).get_regs();
  REQUIRE_OK(regs);
  CHECK(regs->rip == resume_rip);
  CHECK(regs->rbx == TC_RBX);
  CHECK(regs->rbp == TC_RBP);
  CHECK(regs->r12 == TC_R12);
  CHECK(regs->r13 == TC_R13);
  CHECK(regs->r14 == TC_R14);
  CHECK(regs->r15 == TC_R15);
  CHECK(regs->rdi == TG_DOORBELL_MMIO);
  CHECK(std::memcmp(&*regs, &s.vcpu.regs, sizeof *regs) == 0);
  auto sregs = c->machine().vcpu(0).get_sregs();
  REQUIRE_OK(sregs);
  CHECK(sregs->cr3 == s.vcpu.sregs.cr3);
  CHECK(sregs->cs.selector == s.vcpu.sregs.cs.selector);
  CHECK(sregs->efer == s.vcpu.sregs.efer);

  CloneImage cmem(*c);
  check_template_content(cmem);  // before it runs, the clone sees the template
  auto mb = c->machine().memory().read_obj<vic_mailbox>(VIC_MAILBOX_GPA);
  REQUIRE_OK(mb);
  CHECK(mb->clone_id == 7u);
  CHECK(mb->generation > 0);

  // The guest's own checks (registers, mailbox, patterns) pass: success status.
  StopInfo stop = run_clone(*c);
  CHECK(stop.exit_status == expected_status(7));
  check_clone_content(cmem, 7);

  CloneTimes tm = c->times();
  CHECK(tm.requested > 0);
  CHECK(tm.first_run >= tm.requested);
  CHECK(tm.personality >= tm.first_run);
  CHECK(tm.stopped >= tm.personality);
  std::printf("[clone] start->first KVM_RUN %.0f us, ->personality read %.0f us, ->exit %.0f us\n",
              us(tm.requested, tm.first_run), us(tm.requested, tm.personality), us(tm.requested, tm.stopped));
}

TEST_CASE("clone: writes are copy-on-write, isolated from the template and from siblings", "[kvm][clone]") {
  const auto& t = shared_template();
  FileImage tmem(*t);
  auto a = make_clone(t);
  auto b = make_clone(t);
  REQUIRE_OK(a->start(personality(11)));
  REQUIRE_OK(b->start(personality(12)));
  CloneImage amem(*a), bmem(*b);
  CHECK(amem.at(TC_FRESH_GPA) != bmem.at(TC_FRESH_GPA));  // separate host mappings

  CHECK(run_clone(*a).exit_status == expected_status(11));
  check_clone_content(amem, 11);
  // The template file did not change...
  check_template_content(tmem);
  // ...and the sibling, started but not yet run, still sees the template.
  for (uint64_t page : kStampedPages) {
    CAPTURE(page);
    CHECK(same_page(bmem, tmem, page));
    CHECK(!same_page(amem, tmem, page));
  }

  CHECK(run_clone(*b).exit_status == expected_status(12));
  check_clone_content(bmem, 12);
  check_clone_content(amem, 11);  // b's writes did not reach a
  check_template_content(tmem);
  // Pages neither clone wrote are still the template's, in both.
  for (uint64_t page : {uint64_t{TC_PATTERN0_GPA}, uint64_t{TC_PATTERN2_GPA}, uint64_t{TG_LOAD_GPA}}) {
    CAPTURE(page);
    CHECK(same_page(amem, tmem, page));
    CHECK(same_page(bmem, tmem, page));
  }
  // The mailboxes differ: each clone's own personality.
  auto ma = a->machine().memory().read_obj<vic_mailbox>(VIC_MAILBOX_GPA);
  auto mb = b->machine().memory().read_obj<vic_mailbox>(VIC_MAILBOX_GPA);
  REQUIRE_OK(ma);
  REQUIRE_OK(mb);
  CHECK(ma->clone_id == 11u);
  CHECK(mb->clone_id == 12u);
}

TEST_CASE("template: the sealed memory file cannot be changed", "[kvm][clone]") {
  const auto& t = shared_template();
  const int fd = t->memory_fd();
  const auto size = static_cast<off_t>(t->mem_size());

  int seals = fcntl(fd, F_GET_SEALS);
  CHECK(seals == (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  CHECK(st.st_size == size);

  const uint64_t junk = 0xdeadbeefdeadbeefull;
  errno = 0;
  CHECK(write(fd, &junk, sizeof junk) == -1);
  CHECK(errno == EPERM);
  errno = 0;
  CHECK(pwrite(fd, &junk, sizeof junk, TC_PATTERN0_GPA) == -1);
  CHECK(errno == EPERM);
  errno = 0;
  CHECK(mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
  CHECK(errno == EPERM);
  errno = 0;
  CHECK(ftruncate(fd, size / 2) == -1);
  CHECK(errno == EPERM);
  errno = 0;
  CHECK(ftruncate(fd, size * 2) == -1);
  CHECK(errno == EPERM);
  // Punching a hole would zero a page under every clone: refused too.
  errno = 0;
  CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, TC_PATTERN0_GPA, 4096) == -1);
  CHECK(errno == EPERM);
  errno = 0;
  CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == -1);  // F_SEAL_SEAL: the seals are final
  CHECK(errno == EPERM);

  {
    // A read-only shared mapping works but can never become writable.
    FileImage ro(*t);
    CHECK(ro.u64(TC_PATTERN0_GPA) == pattern_at(TC_PATTERN0_GPA));
    errno = 0;
    CHECK(mprotect(const_cast<uint8_t*>(ro.at(0)), ro.size(), PROT_READ | PROT_WRITE) == -1);
    CHECK(errno == EACCES);
  }

  // MAP_PRIVATE writable (how clones map it) works; writes stay private.
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  REQUIRE(p != MAP_FAILED);
  Mapping priv(p, static_cast<size_t>(size));
  std::memcpy(priv.bytes() + TC_PATTERN0_GPA, &junk, sizeof junk);
  uint64_t v = 0;
  std::memcpy(&v, priv.bytes() + TC_PATTERN0_GPA, sizeof v);
  CHECK(v == junk);
  REQUIRE(pread(fd, &v, sizeof v, TC_PATTERN0_GPA) == static_cast<ssize_t>(sizeof v));
  CHECK(v == pattern_at(TC_PATTERN0_GPA));
  check_template_content(FileImage(*t));
}

TEST_CASE("clone: every clone gets its own personality", "[kvm][clone]") {
  const auto& t = shared_template();
  constexpr unsigned kClones = 8;

  SECTION("one after another") {
    std::vector<uint32_t> ids;
    std::vector<Outcome> outcomes;
    for (uint32_t id = 1; id <= kClones; ++id) {
      ids.push_back(id);
      outcomes.push_back(clone_life(Clone::create(kvm(), t, clone_options()), id));
    }
    check_outcomes(outcomes, ids);
  }

  SECTION("created, started and run on parallel threads") {
    std::vector<uint32_t> ids;
    for (uint32_t id = 21; id < 21 + kClones; ++id) ids.push_back(id);
    std::vector<Outcome> outcomes(kClones);
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < kClones; ++i)
      threads.emplace_back([&, i] { outcomes[i] = clone_life(Clone::create(kvm(), t, clone_options()), ids[i]); });
    for (auto& th : threads) th.join();
    check_outcomes(outcomes, ids);
  }

  SECTION("without a caller-chosen id, clones number themselves uniquely") {
    std::set<uint32_t> seen;
    for (unsigned i = 0; i < 4; ++i) {
      auto c = make_clone(t);
      REQUIRE_OK(c->start(AgentRequest{}));
      uint32_t id = c->id();
      CHECK(id != 0);
      CHECK(run_clone(*c).exit_status == expected_status(id));
      seen.insert(id);
    }
    CHECK(seen.size() == 4);
  }
}

TEST_CASE("clone: the dirty page set is exactly what the guest and the VMM wrote", "[kvm][clone]") {
  const auto& t = shared_template();
  auto c = make_clone(t);
  const uint8_t* host = c->machine().memory().regions()[0].host;

  auto none = c->dirty_page_list();
  REQUIRE_OK(none);
  CHECK(none->empty());

  // start() writes the mailbox; restoring the vCPU and VM state writes no
  // guest memory (the tiny guest has no kvmclock or other PV areas).
  REQUIRE_OK(c->start(personality(41)));
  auto after_start = c->dirty_page_list();
  REQUIRE_OK(after_start);
  CHECK(*after_start == std::vector<uint64_t>{VIC_MAILBOX_GPA / kPage});
  CHECK(anonymous_kb(host) == 4);

  CHECK(run_clone(*c).exit_status == expected_status(41));
  auto pages = c->dirty_page_list();
  REQUIRE_OK(pages);
  // Only the stamped pages, even though the guest also read the pattern
  // pages and the mailbox (reads map the template's page, no copy), ran code
  // and went through its page tables (their A/D bits were set before the
  // template point: see clone_template.S).
  CHECK(*pages == expected_dirty_pages());
  auto n = c->dirty_pages();
  REQUIRE_OK(n);
  CHECK(*n == expected_dirty_pages().size());
  auto priv = c->private_bytes();
  REQUIRE_OK(priv);
  CHECK(*priv == 4096 * expected_dirty_pages().size());
  // The kernel agrees: exactly those pages were copied.
  CHECK(anonymous_kb(host) == static_cast<long>(*priv / 1024));
  // Harvesting again changes nothing.
  auto again = c->dirty_page_list();
  REQUIRE_OK(again);
  CHECK(*again == *pages);
  std::printf("[clone] dirty pages after a tiny-guest run: %zu (private %lu bytes)\n", pages->size(),
              static_cast<unsigned long>(*priv));
}

TEST_CASE("clone: reset brings touched pages back and the clone runs again", "[kvm][clone]") {
  const auto& t = shared_template();
  FileImage tmem(*t);
  auto c = make_clone(t);
  CloneImage cmem(*c);
  const auto& region = c->machine().memory().regions()[0];
  REQUIRE(region.gpa == 0);
  REQUIRE(region.size == t->mem_size());

  REQUIRE_OK(c->start(personality(31)));
  CHECK(run_clone(*c).exit_status == expected_status(31));
  check_clone_content(cmem, 31);

  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE_OK(c->reset());
    double reset_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[clone] reset of %zu dirty pages: %.0f us\n", expected_dirty_pages().size(), reset_us);

    // Every byte of guest RAM is the template's again, and nothing is private.
    for (uint64_t page : expected_dirty_pages()) {
      CAPTURE(page);
      CHECK(same_page(cmem, tmem, page * kPage));
    }
    CHECK(std::memcmp(region.host, tmem.at(0), region.size) == 0);
    CHECK(anonymous_kb(region.host) == 0);
    auto p0 = c->private_bytes();
    REQUIRE_OK(p0);
    CHECK(*p0 == 0);

    // A new personality (or, in the last round, the first one again).
    const uint32_t id = round == 2 ? 31 : static_cast<uint32_t>(32 + round);
    REQUIRE_OK(c->start(personality(id)));
    CHECK(c->id() == id);
    StopInfo stop = run_clone(*c);
    CHECK(stop.exit_status == expected_status(id));
    check_clone_content(cmem, id);
    auto pages = c->dirty_page_list();
    REQUIRE_OK(pages);
    CHECK(*pages == expected_dirty_pages());
    auto priv = c->private_bytes();
    REQUIRE_OK(priv);
    CHECK(*priv == 4096 * expected_dirty_pages().size());
    CloneTimes tm = c->times();
    CHECK(tm.personality >= tm.first_run);
    CHECK(tm.first_run >= tm.requested);
  }
  check_template_content(tmem);
}

TEST_CASE("template snapshot: save, load, clone; corruption and the wrong host are rejected", "[kvm][clone][snapshot]") {
  namespace sd = snapshot_detail;
  const auto& t = shared_template();
  TempDir tmp;
  const std::string dir = tmp.path + "/snap";
  REQUIRE_OK(t->save(dir));
  CHECK(std::filesystem::is_regular_file(dir + "/" + sd::kStateFile));
  CHECK(std::filesystem::file_size(dir + "/" + sd::kMemoryFile) == t->mem_size());
  // Saving over it is refused unless asked.
  auto again = t->save(dir);
  CHECK(!again.has_value());

  const HostKind host = t->state().host;
  {
    auto loaded = Template::load(dir, host);
    REQUIRE_OK(loaded);
    const Template& l = **loaded;
    CHECK(l.mem_size() == t->mem_size());
    CHECK(std::memcmp(&l.state().vcpu.regs, &t->state().vcpu.regs, sizeof(kvm_regs)) == 0);
    CHECK(l.state().vcpu.msrs.size() == t->state().vcpu.msrs.size());
    CHECK(l.state().cpuid.size() == t->state().cpuid.size());
    FileImage a(*t), b(l);
    CHECK(std::memcmp(a.at(0), b.at(0), t->mem_size()) == 0);

    auto c = make_clone(*loaded);
    REQUIRE_OK(c->start(personality(51)));
    CHECK(run_clone(*c).exit_status == expected_status(51));
    check_clone_content(CloneImage(*c), 51);
    auto pages = c->dirty_page_list();
    REQUIRE_OK(pages);
    CHECK(*pages == expected_dirty_pages());
    check_template_content(b);  // the memory.bin file is untouched
  }

  SECTION("the other host kind is refused") {
    const HostKind other = host == HostKind::NestedPvm ? HostKind::HardwareKvm : HostKind::NestedPvm;
    auto r = Template::load(dir, other);
    REQUIRE(!r.has_value());
    CAPTURE(r.error().message);
    CHECK(r.error().message.find("host") != std::string::npos);
  }

  SECTION("a flipped byte in state.bin is caught by a checksum") {
    const std::string state = dir + "/" + sd::kStateFile;
    // One in the payload (the vCPU registers section), one in the header (mem_size).
    for (off_t off : {static_cast<off_t>(sd::kHeaderSize + 40), off_t{84}}) {
      CAPTURE(off);
      flip_byte(state, off);
      auto r = Template::load(dir, host);
      REQUIRE(!r.has_value());
      CAPTURE(r.error().message);
      CHECK(r.error().message.find("checksum") != std::string::npos);
      flip_byte(state, off);  // restored: loads again
      CHECK(Template::load(dir, host).has_value());
    }
  }

  SECTION("a flipped byte in memory.bin is caught by the memory checksum") {
    const std::string memory = dir + "/" + sd::kMemoryFile;
    flip_byte(memory, TC_PATTERN0_GPA + 123);
    auto r = Template::load(dir, host);
    REQUIRE(!r.has_value());
    CAPTURE(r.error().message);
    CHECK(r.error().message.find("checksum") != std::string::npos);
    // Skipping the (slow, whole-file) verification is the caller's choice.
    CHECK(Template::load(dir, host, /*verify_memory=*/false).has_value());
  }
}

TEST_CASE("clone pool: pre-built shells, release off the caller's thread, clean shutdown", "[kvm][clone][pool]") {
  const auto& t = shared_template();
  constexpr size_t kTarget = 4;
  PoolOptions popts;
  popts.target = kTarget;
  popts.clone = clone_options();
  popts.clone.on_console_line = LifeProbe{};
  const size_t fds0 = open_fds();
  const long live0 = LifeProbe::live.load();

  SECTION("acquire pre-built shells; release destroys them on the pool's thread") {
    {
      ClonePool pool(kvm(), t, popts);
      REQUIRE_OK(pool.wait_ready(kTarget));
      CHECK(pool.ready() == kTarget);
      const long live_ready = LifeProbe::live.load();
      CHECK(live_ready - live0 >= static_cast<long>(kTarget) + 1);  // the pool's options + each shell

      const long main_destroyed = LifeProbe::destroyed_on_this_thread();
      std::vector<std::unique_ptr<Clone>> clones;
      for (size_t i = 0; i < kTarget; ++i) {
        auto c = pool.acquire();
        REQUIRE_OK(c);
        clones.push_back(std::move(*c));
      }
      CHECK(pool.built_on_demand() == 0);
      CHECK(pool.built() >= kTarget);
      std::vector<uint32_t> ids;
      for (size_t i = 0; i < kTarget; ++i) {
        uint32_t id = static_cast<uint32_t>(61 + i);
        ids.push_back(id);
        REQUIRE_OK(clones[i]->start(personality(id)));
        CHECK(run_clone(*clones[i]).exit_status == expected_status(id));
        check_clone_content(CloneImage(*clones[i]), id);
      }
      for (auto& c : clones) pool.release(std::move(c));
      // The pool refills to its target and destroys the released clones; the
      // probe count only gets back to where it was once both happened.
      CHECK(eventually([&] { return pool.ready() == kTarget && LifeProbe::live.load() == live_ready; }));
      CHECK(pool.built() >= 2 * kTarget);
      // None of it ran on this thread.
      CHECK(LifeProbe::destroyed_on_this_thread() == main_destroyed);
    }
    CHECK(LifeProbe::live.load() == live0);
    CHECK(open_fds() == fds0);
  }

  SECTION("concurrent acquire from several threads") {
    constexpr unsigned kThreads = 8;
    {
      ClonePool pool(kvm(), t, popts);
      REQUIRE_OK(pool.wait_ready(kTarget));
      std::vector<uint32_t> ids;
      for (uint32_t i = 0; i < kThreads; ++i) ids.push_back(71 + i);
      std::vector<Outcome> outcomes(kThreads);
      std::vector<std::thread> threads;
      for (unsigned i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
          auto c = pool.acquire();
          if (!c) {
            outcomes[i].error = "acquire: " + c.error().message;
            return;
          }
          std::unique_ptr<Clone> clone = std::move(*c);
          outcomes[i] = clone_life(std::move(clone), ids[i]);
        });
      for (auto& th : threads) th.join();
      check_outcomes(outcomes, ids);
      // Every clone came from the pool, ready or built on demand.
      CHECK(pool.built() + pool.built_on_demand() >= kThreads);
      std::printf("[clone] pool of %zu, %u concurrent acquires: %lu built ahead, %lu on demand\n", kTarget, kThreads,
                  static_cast<unsigned long>(pool.built()), static_cast<unsigned long>(pool.built_on_demand()));
    }
    CHECK(LifeProbe::live.load() == live0);
    CHECK(open_fds() == fds0);
  }

  SECTION("destroying the pool with ready, released and outstanding shells") {
    std::unique_ptr<Clone> survivor;
    {
      ClonePool pool(kvm(), t, popts);
      REQUIRE_OK(pool.wait_ready(kTarget));
      auto a = pool.acquire();
      auto b = pool.acquire();
      REQUIRE_OK(a);
      REQUIRE_OK(b);
      REQUIRE_OK((*a)->start(personality(81)));
      CHECK(run_clone(**a).exit_status == expected_status(81));
      pool.release(std::move(*a));  // likely still in the graveyard at destruction
      survivor = std::move(*b);     // outlives the pool
    }
    // A shell taken from a pool does not depend on it.
    REQUIRE_OK(survivor->start(personality(82)));
    CHECK(run_clone(*survivor).exit_status == expected_status(82));
    survivor.reset();
    CHECK(LifeProbe::live.load() == live0);
    CHECK(open_fds() == fds0);
  }
}

TEST_CASE("diff snapshot: only the clone's pages, restored on top of its template", "[kvm][clone][snapshot]") {
  const auto& t = shared_template();
  TempDir tmp;
  const std::string dir = tmp.path + "/diff";
  auto c = make_clone(t);
  REQUIRE_OK(c->start(personality(61)));
  CHECK(run_clone(*c).exit_status == expected_status(61));
  auto pages = c->dirty_page_list();
  REQUIRE_OK(pages);
  auto regs = c->machine().vcpu(0).get_regs();
  REQUIRE_OK(regs);
  REQUIRE_OK(c->save_diff(dir));

  // The memory file holds the written pages and nothing else.
  struct stat st {};
  REQUIRE(stat((dir + "/memory.bin").c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 <= pages->size() * kPage + 64 * 1024);

  auto d = Clone::from_diff(kvm(), t, dir, clone_options());
  REQUIRE_OK(d);
  Clone& restored = **d;
  // Same memory on every written page, same registers, same dirty set.
  CloneImage a(*c), b(restored);
  for (uint64_t gpa : *pages) CHECK(same_page(a, b, gpa * kPage));
  check_clone_content(b, 61);
  auto rregs = restored.machine().vcpu(0).get_regs();
  REQUIRE_OK(rregs);
  CHECK(rregs->rip == regs->rip);
  CHECK(rregs->rsp == regs->rsp);
  auto rpages = restored.dirty_page_list();
  REQUIRE_OK(rpages);
  CHECK(*rpages == *pages);
  // The template is untouched.
  check_template_content(FileImage(*t));

  SECTION("a corrupted page list is refused") {
    flip_byte(dir + "/pages.bin", 20);
    auto bad = Clone::from_diff(kvm(), t, dir, clone_options());
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.find("pages.bin") != std::string::npos);
  }
  SECTION("a diff on top of another template is refused") {
    // Same guest, one word of otherwise untouched memory different.
    auto other = make_template(0x5ca1ab1e);
    auto bad = Clone::from_diff(kvm(), other, dir, clone_options());
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.find("another template") != std::string::npos);
  }
  SECTION("the same template, reloaded from its snapshot, is accepted") {
    REQUIRE_OK(t->save(tmp.path + "/base"));
    auto same = Template::load(tmp.path + "/base", t->state().host);
    REQUIRE_OK(same);
    CHECK(Clone::from_diff(kvm(), *same, dir, clone_options()).has_value());
  }
}
