#include "vmm/virtio/mmio.h"

#include <fmt/format.h>

namespace vicvmm::virtio {

using namespace mmio;

MmioTransport::MmioTransport(std::shared_ptr<Device> device, GuestMemory& mem, std::function<void()> raise_irq)
    : device_(std::move(device)),
      mem_(mem),
      raise_irq_(std::move(raise_irq)),
      offered_(device_->features() | kTransportFeatures) {
  for (uint16_t max : device_->queue_max_sizes()) queues_.emplace_back(std::min<uint16_t>(max, kMaxQueueSize));
}

uint32_t MmioTransport::status() const {
  std::lock_guard lock(mu_);
  return regs_.status;
}

SplitQueue* MmioTransport::selected() {
  return regs_.queue_sel < queues_.size() ? &queues_[regs_.queue_sel] : nullptr;
}

void MmioTransport::read(uint64_t, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (offset >= kRegConfig) {
    device_->read_config(offset - kRegConfig, data);
    return;
  }
  // Registers are 32 bits wide and read whole (4.2.2.2); anything else reads 0.
  uint32_t v = (data.size() == 4 && offset % 4 == 0) ? read_reg(offset) : 0;
  for (size_t i = 0; i < data.size(); ++i) data[i] = i < 4 ? static_cast<uint8_t>(v >> (8 * i)) : 0;
}

void MmioTransport::write(uint64_t, uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kRegConfig) {
    std::lock_guard lock(mu_);
    device_->write_config(offset - kRegConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4) return;
  uint32_t v = data[0] | (data[1] << 8) | (data[2] << 16) | (static_cast<uint32_t>(data[3]) << 24);
  if (offset == kRegQueueNotify) {
    notify(v);
    return;
  }
  std::lock_guard lock(mu_);
  write_reg(offset, v);
}

uint32_t MmioTransport::read_reg(uint64_t offset) {
  SplitQueue* q = selected();
  switch (offset) {
    case kRegMagic: return kMagic;
    case kRegVersion: return kVersion;
    case kRegDeviceId: return device_->device_id();
    case kRegVendorId: return kVendor;
    case kRegDeviceFeatures:
      return regs_.device_features_sel < 2 ? static_cast<uint32_t>(offered_ >> (32 * regs_.device_features_sel)) : 0;
    case kRegQueueNumMax: return q ? q->max_size() : 0;
    case kRegQueueReady: return q ? q->ready() : 0;
    case kRegInterruptStatus: return regs_.interrupt_status;
    case kRegStatus: return regs_.status;
    case kRegConfigGeneration: return regs_.config_generation;
    case kRegShmLenLow:
    case kRegShmLenHigh: return 0xffffffff;  // no shared memory regions
    default: return 0;
  }
}

void MmioTransport::write_reg(uint64_t offset, uint32_t v) {
  SplitQueue* q = selected();
  // Queue layout registers only change while the queue is disabled (4.2.3.2).
  bool configurable = q && !q->ready();
  auto set_low = [](uint64_t old, uint32_t lo) { return (old & ~0xffffffffull) | lo; };
  auto set_high = [](uint64_t old, uint32_t hi) { return (old & 0xffffffffull) | (uint64_t{hi} << 32); };
  switch (offset) {
    case kRegDeviceFeaturesSel: regs_.device_features_sel = v; break;
    case kRegDriverFeatures:
      // Features are fixed once FEATURES_OK is set.
      if (regs_.driver_features_sel < 2 && !(regs_.status & kStatusFeaturesOk)) {
        regs_.driver_features = regs_.driver_features_sel == 0 ? set_low(regs_.driver_features, v)
                                                               : set_high(regs_.driver_features, v);
      }
      break;
    case kRegDriverFeaturesSel: regs_.driver_features_sel = v; break;
    case kRegQueueSel: regs_.queue_sel = v; break;
    case kRegQueueNum:
      if (configurable) q->set_size(static_cast<uint16_t>(v > 0xffff ? 0 : v));
      break;
    case kRegQueueDescLow: if (configurable) q->set_desc(set_low(q->state().desc, v)); break;
    case kRegQueueDescHigh: if (configurable) q->set_desc(set_high(q->state().desc, v)); break;
    case kRegQueueDriverLow: if (configurable) q->set_avail(set_low(q->state().avail, v)); break;
    case kRegQueueDriverHigh: if (configurable) q->set_avail(set_high(q->state().avail, v)); break;
    case kRegQueueDeviceLow: if (configurable) q->set_used(set_low(q->state().used, v)); break;
    case kRegQueueDeviceHigh: if (configurable) q->set_used(set_high(q->state().used, v)); break;
    case kRegQueueReady:
      if (!q) break;
      if (v == 0) {
        uint16_t n = q->state().size;
        q->reset();
        q->set_size(n);
      } else if (!q->ready() && !(regs_.status & kStatusNeedsReset)) {
        QueueFault f = q->enable(mem_, regs_.driver_features & kFeatureEventIdx,
                                 regs_.driver_features & kFeatureIndirectDesc);
        if (f != QueueFault::None) needs_reset_locked(f);
      }
      break;
    case kRegInterruptAck: regs_.interrupt_status &= ~v; break;
    case kRegStatus: write_status(v); break;
    default: break;  // read-only or unknown: ignored
  }
}

void MmioTransport::write_status(uint32_t v) {
  if (v == 0) {
    reset_locked();
    return;
  }
  // The driver only adds bits (3.1.1); NEEDS_RESET is the device's to set.
  v = (v & ~kStatusNeedsReset) | (regs_.status & kStatusNeedsReset);
  uint32_t added = v & ~regs_.status;
  if (added & kStatusFeaturesOk) {
    // Refuse what was not offered, and the legacy interface (no VERSION_1):
    // FEATURES_OK then does not stick and the driver gives up (3.1.1 step 6).
    if ((regs_.driver_features & ~offered_) || !(regs_.driver_features & kFeatureVersion1)) v &= ~kStatusFeaturesOk;
  }
  if ((added & kStatusDriverOk) && !(v & kStatusFeaturesOk)) v &= ~kStatusDriverOk;
  regs_.status = v;
  if ((added & kStatusDriverOk) && (v & kStatusDriverOk)) {
    device_->activate(regs_.driver_features);
    // Buffers may already be waiting (the driver fills rx queues early).
    for (uint32_t i = 0; i < queues_.size(); ++i) process_locked(i);
  }
}

void MmioTransport::reset_locked() {
  device_->reset();
  for (auto& q : queues_) q.reset();
  regs_ = TransportRegs{};
}

void MmioTransport::reset() {
  std::lock_guard lock(mu_);
  reset_locked();
}

void MmioTransport::notify(uint32_t queue) {
  stats_.notifies.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (queue < queues_.size()) process_locked(queue);
}

void MmioTransport::process_locked(uint32_t index) {
  if (!(regs_.status & kStatusDriverOk) || (regs_.status & kStatusNeedsReset)) return;
  SplitQueue& q = queues_[index];
  if (!q.ready() || q.broken()) return;
  device_->process(index, *this);
  // A device may answer on other queues (virtio-console's control and
  // input): each decides on its own interrupt, one per batch at most.
  for (auto& other : queues_)
    if (other.ready()) signal_locked(other);
}

void MmioTransport::signal_locked(SplitQueue& q) {
  stats_.chains.fetch_add(static_cast<uint16_t>(q.state().next_used - q.state().signalled_used),
                          std::memory_order_relaxed);
  // One interrupt for the whole batch, if the driver wants one.
  if (q.should_notify()) {
    regs_.interrupt_status |= kInterruptVring;
    stats_.interrupts.fetch_add(1, std::memory_order_relaxed);
    if (raise_irq_) raise_irq_();
  }
  if (q.broken()) needs_reset_locked(q.fault());
}

void MmioTransport::on_completions() {
  std::lock_guard lock(mu_);
  device_->complete(*this);
  for (auto& q : queues_)
    if (q.ready()) signal_locked(q);
}

void MmioTransport::needs_reset_locked(QueueFault f) {
  stats_.faults[static_cast<size_t>(f)].fetch_add(1, std::memory_order_relaxed);
  if (regs_.status & kStatusNeedsReset) return;
  stats_.resets_needed.fetch_add(1, std::memory_order_relaxed);
  regs_.status |= kStatusNeedsReset;
  regs_.interrupt_status |= kInterruptConfig;
  stats_.interrupts.fetch_add(1, std::memory_order_relaxed);
  if (raise_irq_) raise_irq_();
}

void MmioTransport::config_changed() {
  std::lock_guard lock(mu_);
  ++regs_.config_generation;
  regs_.interrupt_status |= kInterruptConfig;
  stats_.interrupts.fetch_add(1, std::memory_order_relaxed);
  if (raise_irq_) raise_irq_();
}

TransportState MmioTransport::save() const {
  std::lock_guard lock(mu_);
  TransportState s{regs_, {}};
  for (const auto& q : queues_) s.queues.push_back(q.state());
  return s;
}

void MmioTransport::poll() {
  std::lock_guard lock(mu_);
  for (uint32_t i = 0; i < queues_.size(); ++i) process_locked(i);
}

TransportState MmioTransport::quiesce_and_save() {
  {
    std::lock_guard lock(mu_);
    // Whatever the driver made available before the vCPUs stopped is taken
    // now: its kick may still sit in an eventfd nobody reads any more.
    for (uint32_t i = 0; i < queues_.size(); ++i) process_locked(i);
    device_->quiesce(*this);
    for (auto& q : queues_)
      if (q.ready()) signal_locked(q);
  }
  return save();
}

bool MmioTransport::restore(const TransportState& s) {
  std::lock_guard lock(mu_);
  if (s.queues.size() != queues_.size()) return false;
  device_->reset();
  regs_ = s.regs;
  bool ok = true;
  for (size_t i = 0; i < queues_.size(); ++i)
    if (queues_[i].restore(mem_, s.queues[i]) != QueueFault::None) ok = false;
  if (regs_.status & kStatusDriverOk) {
    device_->activate(regs_.driver_features);
    device_->restored();
  }
  return ok;
}

std::string MmioTransport::stats_line() const {
  std::string s = fmt::format("virtio-{}: {} notifies, {} chains, {} interrupts, {} resets needed", device_->name(),
                              stats_.notifies.load(), stats_.chains.load(), stats_.interrupts.load(),
                              stats_.resets_needed.load());
  for (size_t k = 1; k < stats_.faults.size(); ++k)
    if (uint64_t n = stats_.faults[k].load())
      s += fmt::format(", {}: {}", queue_fault_name(static_cast<QueueFault>(k)), n);
  return s;
}

}  // namespace vicvmm::virtio
