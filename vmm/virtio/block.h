// virtio-blk (virtio 1.2, 5.2) over a raw image file, with io_uring doing
// the I/O: each kick turns every available request into SQEs and submits
// them in one io_uring_submit; completions arrive on an eventfd that the
// I/O thread watches, and one interrupt covers all of them.
//
// Supported: IN, OUT, FLUSH (fsync), GET_ID, DISCARD (punch a hole) and
// WRITE_ZEROES (zero a range) where the file system allows them. A
// read-only disk offers VIRTIO_BLK_F_RO and fails writes with IOERR.
// The image is locked (flock: exclusive for read-write, shared for
// read-only) so a read-write disk is never used by two VMs at once.
#pragma once

#include <liburing.h>

#include <string>
#include <vector>

#include "vmm/unique_fd.h"
#include "vmm/virtio/device.h"

namespace vicvmm::virtio {

struct BlockOptions {
  std::string path;
  bool read_only = false;
  std::string id;  // GET_ID answer (at most 20 bytes); default: the file name
};

// `--disk PATH[,ro]`
Result<BlockOptions> parse_disk_option(const std::string& text);

class Block : public Device {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint32_t kSegMax = 126;  // data segments per request

  // An empty `path` makes an empty, read-only slot (capacity 0) that an
  // image is attached to later, e.g. per clone of a template booted with it.
  static Result<std::shared_ptr<Block>> open(const BlockOptions& opts);
  ~Block() override;

  // Empty slots only: puts a read-only image behind the slot (replacing
  // any earlier one) or takes it away. The VM must not be running; the
  // caller tells the driver with a configuration-change interrupt.
  Result<> attach(const std::string& path);
  void detach();
  bool hot_plug() const { return hot_plug_; }

  const char* name() const override { return "blk"; }
  uint32_t device_id() const override { return kDeviceBlock; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void process(size_t queue, QueueHost& host) override;
  int completion_fd() const override { return event_.get(); }
  void complete(QueueHost& host) override;
  void quiesce(QueueHost& host) override;
  void reset() override;

  uint64_t capacity_bytes() const { return size_; }
  int fd() const { return fd_.get(); }
  const std::string& path() const { return opts_.path; }
  bool read_only() const { return opts_.read_only; }
  uint64_t requests() const { return requests_; }
  uint64_t submits() const { return submits_; }
  size_t in_flight() const { return in_flight_; }

 private:
  struct Pending {
    bool busy = false;
    uint8_t* status = nullptr;
    uint32_t written = 0;  // bytes the device writes (data + status) on success
    uint32_t expect = 0;   // bytes the operation must transfer
    std::vector<iovec> iov;
  };
  struct ImageFile {
    UniqueFd fd;
    uint64_t size = 0;
    bool can_discard = false;
  };
  static Result<ImageFile> open_image_file(const std::string& path, bool read_only);
  Block() = default;
  // Handles one popped chain: queues an SQE (true) or finishes it at once.
  bool start_request(SplitQueue& q, const Chain& c, bool& need_submit);
  void finish(SplitQueue& q, uint16_t head, uint8_t status, uint32_t written);
  void drain();

  BlockOptions opts_;
  UniqueFd fd_;
  UniqueFd event_;
  io_uring ring_{};
  bool ring_ok_ = false;
  uint64_t size_ = 0;
  bool can_discard_ = false;
  bool hot_plug_ = false;  // opened as an empty slot
  Chain chain_;
  std::vector<Pending> pending_ = std::vector<Pending>(kQueueSize);
  size_t in_flight_ = 0;
  uint64_t requests_ = 0, submits_ = 0;
};

}  // namespace vicvmm::virtio
