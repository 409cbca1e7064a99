// libFuzzer target: the template snapshot decoder (clone/snapshot.h) on an
// untrusted state file.
//
// Input layout:
//   [0]    mode: bit 0 clear: the rest is a payload for decode_payload();
//          bit 0 set: the rest is a whole state.bin, read by read_snapshot()
//          from a scratch directory next to a sparse, all-zero memory.bin
//          of mem_size bytes (when that is at most 64 GiB; else empty), where
//            bit 1 fixes the header hash, bit 2 the payload hash and
//            bit 3 the payload size (so that the checks behind them run),
//            bit 4 expects a nested-PVM host (else hardware KVM),
//            bit 5 verifies the memory hash
//   rest   the bytes
//
// On a decoded payload: counts, paths and device ids within the format's
// limits; it re-encodes to exactly as many bytes as it was decoded from
// (every section has a fixed or counted length), and decoding that encoding
// gives a state that encodes the same. The header round-trips through
// decode_header/encode_header byte for byte.
// Run: tools/fuzz snapshot [SECONDS]
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "clone/snapshot.h"
#include "tests/fuzz/fuzz_check.h"

using namespace vicvmm;
namespace sd = vicvmm::snapshot_detail;

namespace {

void check_state(const TemplateState& s) {
  FUZZ_CHECK(s.vcpu.msrs.size() <= sd::kMaxMsrs);
  FUZZ_CHECK(s.cpuid.size() <= sd::kMaxCpuidEntries);
  FUZZ_CHECK(s.devices.size() <= sd::kMaxDevices);
  for (const auto& d : s.devices) {
    FUZZ_CHECK(d.spec.device_id >= virtio::kDeviceNet && d.spec.device_id <= virtio::kDeviceRng);
    FUZZ_CHECK(d.spec.path.size() <= sd::kMaxDevicePath);
    FUZZ_CHECK(d.spec.path.find('\0') == std::string::npos);
    FUZZ_CHECK(d.transport.queues.size() <= sd::kMaxDeviceQueues);
  }
}

// decode(encode(s)) encodes like s, and the encoding is `size` bytes.
void check_reencodes(const TemplateState& s, size_t size) {
  auto enc = sd::encode_payload(s);
  FUZZ_CHECK(enc.has_value());
  FUZZ_CHECK(enc->size() == size);
  TemplateState again;
  FUZZ_CHECK(sd::decode_payload(*enc, again).has_value());
  auto enc2 = sd::encode_payload(again);
  FUZZ_CHECK(enc2.has_value() && *enc2 == *enc);
}

void fuzz_payload(std::span<const uint8_t> payload) {
  TemplateState s;
  if (!sd::decode_payload(payload, s)) return;
  check_state(s);
  check_reencodes(s, payload.size());
}

std::string scratch_dir() {
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  std::string tmpl = std::string(base) + "/vicvmm-fuzz-snapshot-XXXXXX";
  if (!mkdtemp(tmpl.data())) abort();
  return tmpl;
}

void write_file(const std::string& path, std::span<const uint8_t> bytes, uint64_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) abort();
  if (!bytes.empty() && write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) abort();
  if (ftruncate(fd, static_cast<off_t>(size)) != 0 && ftruncate(fd, 0) != 0) abort();
  close(fd);
}

void put_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void fuzz_state_file(uint8_t mode, std::span<const uint8_t> in) {
  static const std::string dir = [] {
    std::string d = scratch_dir();
    static std::string removed = d;
    atexit([] {
      unlink((removed + "/" + sd::kStateFile).c_str());
      unlink((removed + "/" + sd::kMemoryFile).c_str());
      rmdir(removed.c_str());
    });
    return d;
  }();
  std::vector<uint8_t> b(in.begin(), in.end());
  uint64_t mem_size = 0;
  if (b.size() >= sd::kHeaderSize) {
    // The header's own round trip: every field, then the hash over them.
    sd::Header h = sd::decode_header(b);
    auto enc = sd::encode_header(h);
    FUZZ_CHECK(std::memcmp(enc.data(), b.data(), sd::kHeaderSize - 8) == 0);
    auto payload = std::span<const uint8_t>(b).subspan(sd::kHeaderSize);
    if (mode & 8) put_le64(b.data() + 88, payload.size());
    if (mode & 4) put_le64(b.data() + 96, sd::payload_checksum(payload));
    if (mode & 2) put_le64(b.data() + 112, sd::header_checksum(b));
    mem_size = sd::decode_header(b).mem_size;
  }
  write_file(dir + "/" + sd::kStateFile, b, b.size());
  write_file(dir + "/" + sd::kMemoryFile, {}, mem_size <= (64ull << 30) ? mem_size : 0);
  const HostKind host = (mode & 16) ? HostKind::NestedPvm : HostKind::HardwareKvm;
  auto snap = read_snapshot(dir, host, mode & 32);
  if (!snap) return;
  FUZZ_CHECK(snap->memory_fd.get() >= 0);
  FUZZ_CHECK(snap->state.host == host && snap->state.mem_size == mem_size);
  check_state(snap->state);
  check_reencodes(snap->state, b.size() - sd::kHeaderSize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  if (data[0] & 1)
    fuzz_state_file(data[0], rest);
  else
    fuzz_payload(rest);
  return 0;
}
