#include "clone/clone.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>

#include "clone/snapshot.h"
#include "vmm/seccomp/seccomp.h"
#include "vmm/virtio/block.h"

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
  c->opts_ = opts;

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
  cfg.pit = opts.pit;
  VIC_ASSIGN(c->machine_, Machine::create(kvm, cfg));
  // CPUID must be set before the first KVM_RUN and never changes: shell work.
  VIC_TRY(c->machine_->vcpu(0).set_cpuid(c->tmpl_->state().cpuid));
  // Each clone opens its own backends behind the template's slots.
  for (const DeviceRecord& rec : c->tmpl_->state().devices) {
    virtio::DeviceSpec spec = rec.spec;
    if (spec.device_id == virtio::kDeviceBlock && !spec.read_only)
      return err("clone: the template's disk {} is read-write; clones cannot share it", spec.path);
    auto dev = virtio::open_device(spec, spec.device_id == virtio::kDeviceBlock ? &rec.spec.identity : nullptr);
    if (!dev) return err("clone: {}", dev.error().message);
    if (spec.device_id == virtio::kDeviceConsole) {
      c->stdio_ = std::static_pointer_cast<virtio::Console>(*dev);
      c->stdio_->set_output([self = c.get()](uint32_t port, std::span<const uint8_t> b) { self->on_stdio(port, b); });
      c->exec_ = ExecChannel::over(c->stdio_);
    }
    if (spec.device_id == virtio::kDeviceNet) c->net_ = std::static_pointer_cast<virtio::Net>(*dev);
    if (spec.device_id == virtio::kDeviceBlock && spec.path.empty() && !c->image_slot_) {
      c->image_slot_ = std::static_pointer_cast<virtio::Block>(*dev);
      c->image_slot_index_ = c->machine_->virtio_slots().size();
    }
    VIC_TRY(c->machine_->add_virtio(std::move(*dev)));
  }
  // The I/O thread writes guest memory too (used rings, read buffers):
  // those pages must be discarded on reset like the guest's own.
  if (opts.dirty_tracking && !c->machine_->virtio_slots().empty()) c->machine_->memory().enable_host_write_log();
  for (const auto& r : c->machine_->memory().regions())
    c->dirty_.emplace_back((r.size / kPage + 63) / 64, 0);
  if (c->restore_ahead_) VIC_TRY(c->restore_template_state());
  return c;
}

void Clone::on_stdio(uint32_t port, std::span<const uint8_t> bytes) {
  if (port == virtio::Console::kExecOut) {
    if (exec_) exec_->on_guest_bytes(bytes);
    return;
  }
  if (opts_.on_output) {
    opts_.on_output(id_, port, bytes);
    return;
  }
  if (!opts_.on_console_line || port >= partial_lines_.size()) return;
  std::string& line = partial_lines_[port];
  for (uint8_t b : bytes) {
    if (b != '\n') {
      line.push_back(static_cast<char>(b));
      continue;
    }
    opts_.on_console_line(id_, line);
    line.clear();
  }
}

Result<> Clone::restore_template_state() {
  const TemplateState& s = tmpl_->state();
  VIC_TRY(restore_vm(machine_->vm(), s.vm, machine_->config().pit));
  VIC_TRY(restore_vcpu(machine_->vcpu(0), s.vcpu));
  machine_->serial().restore(s.serial);
  VIC_TRY(restore_devices(s.devices));
  restored_ = true;
  return {};
}

Result<> Clone::restore_devices(const std::vector<DeviceRecord>& devices) {
  const auto& slots = machine_->virtio_slots();
  if (devices.size() != slots.size())
    return err("clone {}: {} saved devices for {} virtio slots", id_, devices.size(), slots.size());
  for (size_t i = 0; i < slots.size(); ++i)
    if (!slots[i]->transport().restore(devices[i].transport))
      return err("clone {}: virtio-{} (slot {}): saved queues do not fit this guest's memory", id_,
                 slots[i]->transport().name(), i);
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
  if (!pending_image_.empty()) {
    // After the restore, which brought back the template's empty slot.
    VIC_TRY(image_slot_->attach(pending_image_).map_error([&](Error e) {
      e.message = fmt::format("clone {}: {}", id_, e.message);
      return e;
    }));
    machine_->virtio_slots()[image_slot_index_]->transport().config_changed();
  }
  if (stdin_fd_ >= 0) {
    req.flags |= VIC_MB_STDIN;
    stdio_->reopen_input();
    stop_stdin_pump();
    stdin_pump_ = std::thread([this, fd = stdin_fd_, console = stdio_] {
      // Without its filter the pump does not run: the guest reads EOF.
      if (auto c = seccomp::confine_current_thread(seccomp::ThreadKind::StdinPump); !c) {
        console->close_input();
        return;
      }
      uint8_t buf[16384];
      while (!stdin_stop_) {
        pollfd p{fd, POLLIN, 0};
        int r = poll(&p, 1, 100);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) continue;
        ssize_t n = r > 0 && !(p.revents & POLLNVAL) ? ::read(fd, buf, sizeof buf) : 0;
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) break;  // EOF: the guest reads EOF after what was sent
        for (size_t done = 0; done < static_cast<size_t>(n) && !stdin_stop_;)
          done += console->write_input({buf + done, static_cast<size_t>(n) - done}, std::chrono::milliseconds(100));
      }
      console->close_input();
    });
  }
  VIC_ASSIGN(Mailbox mb, build_mailbox(req));
  VIC_ASSIGN(auto pages, write_mailbox(machine_->memory(), mb));
  // The VMM's own writes are not in KVM's dirty log: record them.
  for (uint64_t pfn : pages) dirty_[0][pfn / 64] |= 1ull << (pfn % 64);
  return {};
}

Result<StopInfo> Clone::run() {
  if (exec_) exec_->reopen();
  auto stop = machine_->run();  // takes the guest's last output too
  if (exec_) exec_->close("the container's VM stopped");
  if (!opts_.on_output && opts_.on_console_line)
    for (auto& line : partial_lines_)
      if (!line.empty()) {
        opts_.on_console_line(id_, line);
        line.clear();
      }
  return stop;
}

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
    machine_->memory().take_host_writes(i, dirty_[i]);
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

Result<> Clone::publish(const std::vector<net::PortForward>& forwards) {
  if (forwards.empty()) return {};
  if (!net_) return err("clone {}: its template has no network (template create --net) to publish ports on", id_);
  VIC_TRY(net_->backend().publish(forwards));
  published_ = true;
  return {};
}

Clone::~Clone() { stop_stdin_pump(); }

Result<> Clone::attach_stdin(int fd) {
  if (!stdio_) return err("clone {}: its template has no stdio console for stdin", id_);
  if (fd < 0) return err("clone {}: no stdin descriptor", id_);
  stdin_fd_ = fd;
  return {};
}

void Clone::stop_stdin_pump() {
  stdin_stop_ = true;
  if (stdin_pump_.joinable()) stdin_pump_.join();
  stdin_stop_ = false;
}

Result<> Clone::attach_image(const std::string& disk_path) {
  if (!image_slot_)
    return err("clone {}: its template has no empty disk slot for an image (template create --image-slot)", id_);
  pending_image_ = disk_path;
  return {};
}

Result<> Clone::reset() {
  if (published_) net_->backend().unpublish_all();  // a network-thread round trip: only when needed
  published_ = false;
  // Devices first: a request in flight could write a page after it was
  // discarded below.
  for (const auto& slot : machine_->virtio_slots()) slot->transport().reset();
  if (image_slot_) image_slot_->detach();  // the template's guest knows an empty slot
  pending_image_.clear();
  stop_stdin_pump();
  stdin_fd_ = -1;
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

namespace {

constexpr char kDiffMagic[8] = {'V', 'I', 'C', 'D', 'I', 'F', 'F', '1'};

// What a diff is taken on top of: the template's state and its memory.
Result<uint64_t> template_identity(const Template& t) {
  VIC_ASSIGN(auto payload, snapshot_detail::encode_payload(t.state()));
  void* p = mmap(nullptr, t.mem_size(), PROT_READ, MAP_SHARED, t.memory_fd(), 0);
  if (p == MAP_FAILED) p = mmap(nullptr, t.mem_size(), PROT_READ, MAP_PRIVATE, t.memory_fd(), 0);
  if (p == MAP_FAILED) return sys_err("template identity: mapping memory");
  Mapping mem(p, t.mem_size());
  return snapshot_detail::payload_checksum(payload) ^
         (snapshot_detail::memory_checksum({mem.bytes(), mem.size()}) * 0x9e3779b97f4a7c15ull);
}

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

Result<> Clone::save_diff(const std::string& dir) {
  if (restored_) return err("clone {}: diff snapshot of a clone that never ran", id_);
  Vcpu& vcpu = machine_->vcpu(0);
  VIC_TRY(complete_pending_io(vcpu));
  TemplateState state = tmpl_->state();  // host, size, cpuid as the base
  std::vector<uint32_t> indices;  // the MSRs the template carries
  for (const auto& m : state.vcpu.msrs) indices.push_back(m.index);
  VIC_ASSIGN(state.vcpu, save_vcpu(vcpu, indices));
  const bool pit = machine_->config().pit;
  VIC_ASSIGN(state.vm, save_vm(machine_->vm(), pit));
  if (!pit) state.vm.pit = tmpl_->state().vm.pit;  // what a clone with a PIT would restore
  state.serial = machine_->serial().save();
  // Requests in flight finish first: their buffers are among the pages.
  for (size_t i = 0; i < state.devices.size() && i < machine_->virtio_slots().size(); ++i)
    state.devices[i].transport = machine_->virtio_slots()[i]->transport().quiesce_and_save();
  VIC_ASSIGN(auto pages, dirty_page_list());

  // Only the written pages, in an otherwise untouched (all-zero, unallocated)
  // image: write_snapshot leaves zero pages as holes, so memory.bin holds
  // just these. pages.bin says which pages count, zero ones included.
  const uint64_t size = state.mem_size;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return sys_err("clone {}: diff image", id_);
  Mapping image(p, size);
  for (const auto& r : machine_->memory().regions())
    for (uint64_t pfn : pages)
      if (pfn * kPage >= r.gpa && pfn * kPage < r.gpa + r.size)
        std::memcpy(image.bytes() + r.file_offset + (pfn * kPage - r.gpa), r.host + (pfn * kPage - r.gpa), kPage);
  VIC_TRY(write_snapshot(dir, state, {image.bytes(), image.size()}));

  std::vector<uint8_t> list(kDiffMagic, kDiffMagic + 8);
  VIC_ASSIGN(uint64_t base_id, template_identity(*tmpl_));
  put_u64(list, base_id);
  put_u64(list, pages.size());
  for (uint64_t pfn : pages) put_u64(list, pfn);
  put_u64(list, XXH3_64bits(list.data(), list.size()));
  std::string path = dir + "/pages.bin";
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return sys_err("diff snapshot {}", path);
  if (write(fd.get(), list.data(), list.size()) != static_cast<ssize_t>(list.size()) || fsync(fd.get()) != 0)
    return sys_err("diff snapshot {}: writing", path);
  return {};
}

Result<std::unique_ptr<Clone>> Clone::from_diff(const Kvm& kvm, std::shared_ptr<const Template> base,
                                                const std::string& dir, const CloneOptions& opts) {
  if (!base) return err("diff snapshot {}: no base template", dir);
  std::string path = dir + "/pages.bin";
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err("diff snapshot {}", path);
  std::vector<uint8_t> list;
  uint8_t buf[65536];
  for (ssize_t n; (n = read(fd.get(), buf, sizeof buf)) > 0;) list.insert(list.end(), buf, buf + n);
  if (list.size() < 32 || std::memcmp(list.data(), kDiffMagic, 8) != 0)
    return err("diff snapshot {}: not a diff page list", path);
  uint64_t count = get_u64(list.data() + 16);
  if (count > base->mem_size() / kPage || list.size() != 32 + count * 8)
    return err("diff snapshot {}: truncated or corrupt page list", path);
  if (XXH3_64bits(list.data(), list.size() - 8) != get_u64(list.data() + list.size() - 8))
    return err("diff snapshot {}: checksum mismatch", path);
  VIC_ASSIGN(uint64_t base_id, template_identity(*base));
  if (get_u64(list.data() + 8) != base_id) return err("diff snapshot {}: taken on top of another template", dir);

  VIC_ASSIGN(LoadedSnapshot diff, read_snapshot(dir, base->state().host));
  if (diff.state.mem_size != base->mem_size())
    return err("diff snapshot {}: {} bytes of memory, the template has {}", dir, diff.state.mem_size, base->mem_size());
  void* p = mmap(nullptr, diff.state.mem_size, PROT_READ, MAP_PRIVATE, diff.memory_fd.get(), 0);
  if (p == MAP_FAILED) return sys_err("diff snapshot {}: mapping memory", dir);
  Mapping image(p, diff.state.mem_size);

  CloneOptions o = opts;
  o.restore_ahead = false;
  VIC_ASSIGN(auto c, create(kvm, std::move(base), o));
  const auto& regions = c->machine_->memory().regions();
  for (size_t ri = 0; ri < regions.size(); ++ri) {
    const auto& r = regions[ri];
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t gpa = get_u64(list.data() + 24 + i * 8) * kPage;
      if (gpa < r.gpa || gpa >= r.gpa + r.size) continue;
      std::memcpy(r.host + (gpa - r.gpa), image.bytes() + r.file_offset + (gpa - r.gpa), kPage);
      uint64_t page = (gpa - r.gpa) / kPage;  // a private page of this clone: track it for reset
      c->dirty_[ri][page / 64] |= 1ull << (page % 64);
    }
  }
  VIC_TRY(restore_vm(c->machine_->vm(), diff.state.vm, c->machine_->config().pit));
  VIC_TRY(restore_vcpu(c->machine_->vcpu(0), diff.state.vcpu));
  c->machine_->serial().restore(diff.state.serial);
  VIC_TRY(c->restore_devices(diff.state.devices));
  c->requested_ns_ = monotonic_ns();
  return c;
}

CloneTimes Clone::times() const {
  const auto& s = machine_->stats();
  return {requested_ns_, s.t_first_run.load(), s.t_agent_ready.load(), s.t_stopped.load()};
}

}  // namespace vicvmm
