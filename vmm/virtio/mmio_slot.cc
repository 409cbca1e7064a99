#include "vmm/virtio/mmio_slot.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

namespace vicvmm::virtio {

Result<std::unique_ptr<MmioSlot>> MmioSlot::attach(Vm& vm, Bus& mmio_bus, GuestMemory& mem, EventLoop* loop,
                                                   std::shared_ptr<Device> device, uint32_t index) {
  if (index >= kMaxSlots) return err("virtio-{}: no free virtio-mmio slot ({} in use)", device->name(), kMaxSlots);
  std::unique_ptr<MmioSlot> s(new MmioSlot);
  s->vm_ = &vm;
  s->loop_ = loop;
  s->base_ = kMmioBase + uint64_t{index} * mmio::kWindowSize;
  s->irq_ = kFirstIrq + index;
  const std::string name = device->name();

  std::function<void()> raise;
  if (loop) {
    s->irqfd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!s->irqfd_) return sys_err("virtio-{}: eventfd", name);
    if (auto r = vm.set_irqfd(s->irqfd_.get(), s->irq_); !r) return with_context(r.error(), "virtio-" + name);
    int fd = s->irqfd_.get();
    raise = [fd] {
      uint64_t one = 1;
      ssize_t n = ::write(fd, &one, sizeof one);
      (void)n;  // EAGAIN: the counter is already non-zero, an interrupt is pending
    };
  }
  s->transport_ = std::make_shared<MmioTransport>(std::move(device), mem, std::move(raise));
  VIC_TRY(mmio_bus.insert(s->transport_, s->base_, mmio::kWindowSize));

  if (loop) {
    for (uint32_t q = 0; q < s->transport_->queue_count(); ++q) {
      UniqueFd kick(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      if (!kick) return sys_err("virtio-{}: eventfd", name);
      VIC_TRY(vm.set_ioeventfd(s->base_ + mmio::kRegQueueNotify, 4, q, kick.get()));
      int fd = kick.get();
      std::weak_ptr<MmioTransport> weak = s->transport_;
      auto token = loop->add(fd, EPOLLIN, [fd, q, weak](uint32_t) {
        uint64_t n;
        if (::read(fd, &n, sizeof n) != sizeof n) return;
        if (auto t = weak.lock()) t->notify(q);
      });
      if (!token) {
        (void)vm.set_ioeventfd(s->base_ + mmio::kRegQueueNotify, 4, q, fd, false);
        return tl::unexpected(token.error());
      }
      s->kicks_.push_back(std::move(kick));
      s->tokens_.push_back(*token);
    }
  }
  if (int cfd = s->transport_->device().completion_fd(); cfd >= 0) {
    if (!loop) return err("virtio-{}: needs the I/O thread (an in-kernel irqchip)", name);
    std::weak_ptr<MmioTransport> weak = s->transport_;
    VIC_ASSIGN(uint64_t token, loop->add(cfd, EPOLLIN, [weak](uint32_t) {
      if (auto t = weak.lock()) t->on_completions();
    }));
    s->tokens_.push_back(token);
  }
  return s;
}

void MmioSlot::stop_io() {
  for (uint64_t t : tokens_) loop_->remove(t);
  tokens_.clear();
}

MmioSlot::~MmioSlot() {
  stop_io();
  for (uint32_t q = 0; q < kicks_.size(); ++q)
    (void)vm_->set_ioeventfd(base_ + mmio::kRegQueueNotify, 4, q, kicks_[q].get(), false);
  if (irqfd_) (void)vm_->set_irqfd(irqfd_.get(), irq_, false);
}

std::string MmioSlot::cmdline_word() const { return fmt::format("virtio_mmio.device=4K@{:#x}:{}", base_, irq_); }

}  // namespace vicvmm::virtio
