#include "vmm/virtio/block.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cstring>

namespace vicvmm::virtio {

namespace {

// 5.2.3 feature bits and 5.2.6 request types and status values.
constexpr uint64_t kFSegMax = 1ull << 2;
constexpr uint64_t kFRo = 1ull << 5;
constexpr uint64_t kFBlkSize = 1ull << 6;
constexpr uint64_t kFFlush = 1ull << 9;
constexpr uint64_t kFDiscard = 1ull << 13;
constexpr uint64_t kFWriteZeroes = 1ull << 14;
constexpr uint32_t kTIn = 0, kTOut = 1, kTFlush = 4, kTGetId = 8, kTDiscard = 11, kTWriteZeroes = 13;
constexpr uint8_t kSOk = 0, kSIoErr = 1, kSUnsupp = 2;
constexpr uint64_t kSector = 512;
constexpr uint32_t kIdBytes = 20;
constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per range

struct ReqHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
struct DiscardRange {  // 5.2.6: virtio_blk_discard_write_zeroes
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;  // bit 0: unmap
};

#pragma pack(push, 1)
struct BlkConfig {  // 5.2.4, the fields up to write_zeroes_may_unmap
  uint64_t capacity;
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t cylinders;
  uint8_t heads;
  uint8_t sectors;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
};
#pragma pack(pop)
static_assert(sizeof(BlkConfig) == 60);

}  // namespace

Result<BlockOptions> parse_disk_option(const std::string& text) {
  BlockOptions o;
  auto comma = text.find(',');
  o.path = text.substr(0, comma);
  if (o.path.empty()) return err("--disk '{}': no image path", text);
  while (comma != std::string::npos) {
    auto next = text.find(',', comma + 1);
    std::string opt = text.substr(comma + 1, next == std::string::npos ? std::string::npos : next - comma - 1);
    if (opt == "ro")
      o.read_only = true;
    else if (opt == "rw")
      o.read_only = false;
    else
      return err("--disk '{}': unknown option '{}' (ro or rw)", text, opt);
    comma = next;
  }
  return o;
}

Result<Block::ImageFile> Block::open_image_file(const std::string& p, bool read_only) {
  ImageFile f;
  // O_NONBLOCK: a FIFO must not hang the open; the type is checked next.
  f.fd.reset(::open(p.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK));
  if (!f.fd) return sys_err("disk {}", p);
  struct stat st;
  if (fstat(f.fd.get(), &st) != 0) return sys_err("disk {}: stat", p);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return err("disk {}: not a regular file or block device", p);
  int fl = fcntl(f.fd.get(), F_GETFL);
  fcntl(f.fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  if (flock(f.fd.get(), (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return err("disk {}: in use by another VM (a read-write disk is never shared; give each VM its own copy)", p);
    return sys_err("disk {}: flock", p);
  }
  off_t end = lseek(f.fd.get(), 0, SEEK_END);
  if (end < 0) return sys_err("disk {}: size", p);
  f.size = static_cast<uint64_t>(end);
  if (f.size % kSector) return err("disk {}: size {} is not a multiple of 512 bytes", p, f.size);
  f.can_discard = S_ISREG(st.st_mode) && !read_only;
  return f;
}

Result<std::shared_ptr<Block>> Block::open(const BlockOptions& opts) {
  std::shared_ptr<Block> b(new Block);
  b->opts_ = opts;
  const std::string& p = opts.path;
  if (p.empty()) {
    // An empty slot: capacity 0 until attach(); only read-only images go there.
    b->opts_.read_only = true;
    b->hot_plug_ = true;
    if (b->opts_.id.empty()) b->opts_.id = "empty-slot";
  } else {
    VIC_ASSIGN(ImageFile f, open_image_file(p, opts.read_only));
    b->fd_ = std::move(f.fd);
    b->size_ = f.size;
    b->can_discard_ = f.can_discard;
  }
  if (b->opts_.id.empty()) {
    auto slash = p.rfind('/');
    b->opts_.id = p.substr(slash == std::string::npos ? 0 : slash + 1).substr(0, kIdBytes);
  }
  const std::string what = p.empty() ? std::string("(empty slot)") : p;
  b->event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!b->event_) return sys_err("disk {}: eventfd", what);
  if (int r = io_uring_queue_init(kQueueSize, &b->ring_, 0); r < 0) {
    errno = -r;
    return sys_err("disk {}: io_uring_queue_init", what);
  }
  b->ring_ok_ = true;
  if (int r = io_uring_register_eventfd(&b->ring_, b->event_.get()); r < 0) {
    errno = -r;
    return sys_err("disk {}: io_uring_register_eventfd", what);
  }
  return b;
}

Result<> Block::attach(const std::string& path) {
  if (!hot_plug_) return err("disk {}: not an empty slot; only an empty slot takes an image", opts_.path);
  VIC_ASSIGN(ImageFile f, open_image_file(path, true));
  drain();  // nothing in flight may still use the old file
  fd_ = std::move(f.fd);
  size_ = f.size;
  opts_.path = path;
  return {};
}

void Block::detach() {
  if (!hot_plug_) return;
  drain();
  fd_.reset();
  size_ = 0;
  opts_.path.clear();
}

Block::~Block() {
  if (!ring_ok_) return;
  drain();
  io_uring_queue_exit(&ring_);
}

void Block::drain() {
  // In-flight requests point into guest memory: wait for them, and publish
  // nothing (the rings they belonged to are being torn down).
  while (in_flight_ > 0) {
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
    uint64_t head = io_uring_cqe_get_data64(cqe);
    if (head < pending_.size()) pending_[head].busy = false;
    io_uring_cqe_seen(&ring_, cqe);
    --in_flight_;
  }
}

uint64_t Block::features() const {
  uint64_t f = kFSegMax | kFBlkSize | kFFlush;
  if (opts_.read_only) f |= kFRo;
  if (can_discard_) f |= kFDiscard | kFWriteZeroes;
  return f;
}

void Block::read_config(uint64_t offset, std::span<uint8_t> data) {
  BlkConfig c{};
  c.capacity = size_ / kSector;
  c.seg_max = kSegMax;
  c.blk_size = kSector;
  c.num_queues = 1;
  c.max_discard_sectors = kMaxDiscardSectors;
  c.max_discard_seg = 1;
  c.discard_sector_alignment = 8;  // 4 KiB: what a file system can punch
  c.max_write_zeroes_sectors = kMaxDiscardSectors;
  c.max_write_zeroes_seg = 1;
  c.write_zeroes_may_unmap = 1;
  read_config_window({reinterpret_cast<const uint8_t*>(&c), sizeof c}, offset, data);
}

void Block::reset() { drain(); }

void Block::finish(SplitQueue& q, uint16_t head, uint8_t status, uint32_t written) {
  if (pending_[head].status) *pending_[head].status = status;
  q.push_used(head, status == kSOk ? written : 1);
}

void Block::process(size_t queue, QueueHost& host) {
  SplitQueue& q = host.queue(queue);
  bool need_submit = false;
  while (q.pop(host.memory(), chain_)) {
    ++requests_;
    if (!start_request(q, chain_, need_submit)) break;
  }
  if (need_submit) {
    ++submits_;
    io_uring_submit(&ring_);
  }
}

bool Block::start_request(SplitQueue& q, const Chain& c, bool& need_submit) {
  const uint16_t head = c.head;
  Pending& p = pending_[head];
  if (p.busy) {
    // A correct driver never offers a head that is still in flight.
    q.fail(QueueFault::MalformedRequest);
    return false;
  }
  p.status = nullptr;
  // Layout (5.2.6): 16-byte readable header, data, 1 writable status byte.
  ReqHeader h{};
  if (c.readable_bytes < sizeof h || c.writable_bytes < 1 || c.read(0, {reinterpret_cast<uint8_t*>(&h), sizeof h}) != sizeof h) {
    q.fail(QueueFault::MalformedRequest);
    return false;
  }
  const Segment& last = c.segments.back();
  if (!last.writable || last.len == 0) {
    q.fail(QueueFault::MalformedRequest);
    return false;
  }
  p.status = last.host + last.len - 1;
  const uint64_t in_bytes = c.writable_bytes - 1;       // device-writable data bytes
  const uint64_t out_bytes = c.readable_bytes - sizeof h;  // device-readable data bytes

  // The data segments as iovecs: readable after the header for OUT,
  // writable before the status byte for IN.
  auto collect = [&](bool writable, uint64_t skip, uint64_t want) {
    p.iov.clear();
    for (const auto& s : c.segments) {
      if (s.writable != writable || want == 0) continue;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      uint64_t n = std::min<uint64_t>(s.len - skip, want);
      p.iov.push_back({s.host + skip, static_cast<size_t>(n)});
      want -= n;
      skip = 0;
    }
    return p.iov.size() <= kSegMax + 2;
  };
  auto in_range = [&](uint64_t bytes) {
    return h.sector <= size_ / kSector && bytes <= size_ - h.sector * kSector;
  };
  // Queues one SQE for this request; a full ring is submitted first, and a
  // ring that stays full fails the request rather than waiting.
  auto submit = [&](auto prep, uint32_t expect, uint32_t written) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
      io_uring_submit(&ring_);
      ++submits_;
      sqe = io_uring_get_sqe(&ring_);
    }
    if (!sqe) {
      finish(q, head, kSIoErr, 1);
      return true;
    }
    prep(sqe);
    io_uring_sqe_set_data64(sqe, head);
    p.expect = expect;
    p.written = written;
    p.busy = true;
    ++in_flight_;
    need_submit = true;
    return true;
  };

  switch (h.type) {
    case kTIn:
    case kTOut: {
      bool in = h.type == kTIn;
      if (!in && opts_.read_only) {
        finish(q, head, kSIoErr, 1);
        return true;
      }
      uint64_t bytes = in ? in_bytes : out_bytes;
      if (bytes % kSector || !in_range(bytes)) {
        finish(q, head, kSIoErr, 1);
        return true;
      }
      if (!collect(in, in ? 0 : sizeof h, bytes)) {
        q.fail(QueueFault::MalformedRequest);
        return false;
      }
      if (bytes == 0) {
        finish(q, head, kSOk, 1);
        return true;
      }
      return submit(
          [&](io_uring_sqe* sqe) {
            auto n = static_cast<unsigned>(p.iov.size());
            if (in)
              io_uring_prep_readv(sqe, fd_.get(), p.iov.data(), n, h.sector * kSector);
            else
              io_uring_prep_writev(sqe, fd_.get(), p.iov.data(), n, h.sector * kSector);
          },
          static_cast<uint32_t>(bytes), static_cast<uint32_t>(in ? bytes + 1 : 1));
    }
    case kTFlush:
      return submit([&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd_.get(), 0); }, 0, 1);
    case kTGetId: {
      uint8_t id[kIdBytes] = {};
      std::memcpy(id, opts_.id.data(), std::min<size_t>(opts_.id.size(), kIdBytes));
      // The id fills the data bytes before the status byte.
      size_t n = c.write(0, {id, static_cast<size_t>(std::min<uint64_t>(in_bytes, kIdBytes))});
      finish(q, head, kSOk, static_cast<uint32_t>(n + 1));
      return true;
    }
    case kTDiscard:
    case kTWriteZeroes: {
      if (!can_discard_) {
        finish(q, head, opts_.read_only ? kSIoErr : kSUnsupp, 1);
        return true;
      }
      DiscardRange r{};
      if (out_bytes != sizeof r || c.read(sizeof h, {reinterpret_cast<uint8_t*>(&r), sizeof r}) != sizeof r) {
        finish(q, head, kSUnsupp, 1);  // 5.2.6.2: one range per request (max_*_seg = 1)
        return true;
      }
      h.sector = r.sector;
      uint64_t bytes = uint64_t{r.num_sectors} * kSector;
      if (r.num_sectors > kMaxDiscardSectors || !in_range(bytes) || (r.flags & ~1u)) {
        finish(q, head, kSIoErr, 1);
        return true;
      }
      int mode = FALLOC_FL_KEEP_SIZE |
                 (h.type == kTDiscard || (r.flags & 1) ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
      return submit([&](io_uring_sqe* sqe) { io_uring_prep_fallocate(sqe, fd_.get(), mode, r.sector * kSector, bytes); },
                    0, 1);
    }
    default:
      finish(q, head, kSUnsupp, 1);
      return true;
  }
}

void Block::complete(QueueHost& host) {
  uint64_t n;
  ssize_t r = ::read(event_.get(), &n, sizeof n);
  (void)r;
  SplitQueue& q = host.queue(0);
  io_uring_cqe* cqe;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    uint64_t head = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (head >= pending_.size() || !pending_[head].busy) continue;
    Pending& p = pending_[head];
    p.busy = false;
    --in_flight_;
    bool ok = res >= 0 && static_cast<uint32_t>(res) == p.expect;
    finish(q, static_cast<uint16_t>(head), ok ? kSOk : kSIoErr, p.written);
  }
}

void Block::quiesce(QueueHost& host) {
  // Completed, not dropped: the guest sees these requests done when the
  // template (or a clone of it) resumes.
  while (in_flight_ > 0) {
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
    complete(host);
  }
}

}  // namespace vicvmm::virtio
