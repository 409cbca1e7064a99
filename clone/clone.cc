#include "clone/clone.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <atomic>
#include <bit>

namespace vicvmm {

namespace {
std::atomic<uint32_t> next_clone_id{1};
constexpr uint64_t kPage = 4096;
}  // namespace

Result<std::unique_ptr<Clone>> Clone::create(const Kvm& kvm, std::shared_ptr<const Template> tmpl,
                                             const CloneOptions& opts) {
  if (!tmpl) return err("clone: no template");
  auto c = std::unique_ptr<Clone>(new Clone());
  c->tmpl_ = std::move(tmpl);
  c->id_ = next_clone_id.fetch_add(1);
  c->dirty_tracking_ = opts.dirty_tracking;
  c->restore_ahead_ = opts.restore_ahead;

  MachineConfig cfg;
  cfg.mem_size = c->tmpl_->mem_size();
  cfg.backing = Backing::PrivateFile;  // copy-on-write over the template
  cfg.backing_fd = c->tmpl_->memory_fd();
  cfg.console_fd = opts.console_fd;
  if (opts.on_console_line)  // the id may change at start(): read it when called
    cfg.on_console_line = [cb = opts.on_console_line, self = c.get()](const std::string& line) { cb(self->id_, line); };
  cfg.dirty_log = opts.dirty_tracking;
  cfg.timeout = opts.timeout;
  cfg.host = c->tmpl_->state().host;
  VIC_ASSIGN(c->machine_, Machine::create(kvm, cfg));
  // CPUID must be set before the first KVM_RUN and never changes: shell work.
  VIC_TRY(c->machine_->vcpu(0).set_cpuid(c->tmpl_->state().cpuid));
  for (const auto& r : c->machine_->memory().regions())
    c->dirty_.emplace_back((r.size / kPage + 63) / 64, 0);
  if (c->restore_ahead_) VIC_TRY(c->restore_template_state());
  return c;
}

Result<> Clone::restore_template_state() {
  const TemplateState& s = tmpl_->state();
  VIC_TRY(restore_vm(machine_->vm(), s.vm));
  VIC_TRY(restore_vcpu(machine_->vcpu(0), s.vcpu));
  machine_->serial().restore(s.serial);
  restored_ = true;
  return {};
}

Result<> Clone::start(const AgentRequest& personality, uint64_t requested_ns) {
  requested_ns_ = requested_ns ? requested_ns : monotonic_ns();
  if (!restored_) VIC_TRY(restore_template_state());
  restored_ = false;
  // Time passed since the state was loaded (or since capture): keep the
  // guest's next timer tick where the template expected it.
  VIC_TRY(rebase_tsc_deadline(machine_->vcpu(0), tmpl_->state().vcpu));

  AgentRequest req = personality;
  if (req.clone_id) id_ = req.clone_id;  // the caller's numbering wins
  req.clone_id = id_;
  // A generation above the template's wakes the agent's wait loop.
  req.generation = personality.generation ? personality.generation : 1;
  VIC_ASSIGN(vic_mailbox mb, build_mailbox(req));
  VIC_TRY(machine_->memory().write_obj(VIC_MAILBOX_GPA, mb));
  // The VMM's own write is not in KVM's dirty log: record it.
  dirty_[0][(VIC_MAILBOX_GPA / kPage) / 64] |= 1ull << ((VIC_MAILBOX_GPA / kPage) % 64);
  return {};
}

Result<StopInfo> Clone::run() { return machine_->run(); }

Result<> Clone::harvest_dirty_log() {
  if (!dirty_tracking_) return {};
  const auto& regions = machine_->memory().regions();
  for (size_t i = 0; i < regions.size(); ++i) {
    std::vector<uint64_t> bitmap(dirty_[i].size(), 0);
    kvm_dirty_log log{};
    log.slot = machine_->slot_of_region(i);
    log.dirty_bitmap = bitmap.data();
    if (ioctl(machine_->vm().fd(), KVM_GET_DIRTY_LOG, &log) < 0)
      return sys_err("clone {}: KVM_GET_DIRTY_LOG slot {}", id_, log.slot);
    for (size_t w = 0; w < bitmap.size(); ++w) dirty_[i][w] |= bitmap[w];
  }
  return {};
}

Result<uint64_t> Clone::dirty_pages() {
  VIC_TRY(harvest_dirty_log());
  uint64_t n = 0;
  for (const auto& words : dirty_)
    for (uint64_t w : words) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

Result<std::vector<uint64_t>> Clone::dirty_page_list() {
  VIC_TRY(harvest_dirty_log());
  std::vector<uint64_t> pages;
  const auto& regions = machine_->memory().regions();
  for (size_t i = 0; i < dirty_.size(); ++i)
    for (size_t w = 0; w < dirty_[i].size(); ++w)
      for (uint64_t bits = dirty_[i][w]; bits; bits &= bits - 1)
        pages.push_back(regions[i].gpa / kPage + w * 64 + static_cast<uint64_t>(std::countr_zero(bits)));
  return pages;
}

Result<> Clone::reset() {
  VIC_TRY(harvest_dirty_log());
  // MADV_DONTNEED on a MAP_PRIVATE file mapping drops the private copies:
  // the next access sees the template's page again. Contiguous runs of
  // dirty pages go in one call.
  const auto& regions = machine_->memory().regions();
  for (size_t i = 0; i < dirty_.size(); ++i) {
    const uint64_t npages = regions[i].size / kPage;
    uint64_t p = 0;
    while (p < npages) {
      if (!(dirty_[i][p / 64] >> (p % 64) & 1)) {
        ++p;
        continue;
      }
      uint64_t run_start = p;
      while (p < npages && (dirty_[i][p / 64] >> (p % 64) & 1)) ++p;
      if (madvise(regions[i].host + run_start * kPage, (p - run_start) * kPage, MADV_DONTNEED) != 0)
        return sys_err("clone {}: discarding dirty pages", id_);
    }
    std::fill(dirty_[i].begin(), dirty_[i].end(), 0);
  }
  machine_->clear_stop();
  if (restore_ahead_) VIC_TRY(restore_template_state());
  return {};
}

CloneTimes Clone::times() const {
  const auto& s = machine_->stats();
  return {requested_ns_, s.t_first_run.load(), s.t_agent_ready.load(), s.t_stopped.load()};
}

}  // namespace vicvmm
