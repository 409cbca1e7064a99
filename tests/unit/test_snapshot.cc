// Template snapshots on disk (clone/snapshot.h): round trip, sparseness,
// atomic writes, and rejection of every kind of damaged snapshot.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <xxhash.h>

#include "clone/snapshot.h"
#include "tests/unit/test_helpers.h"

using namespace vicvmm;
using vicvmm::test::error_of;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
namespace sd = vicvmm::snapshot_detail;

namespace {

constexpr uint64_t kPage = 4096;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vicvmm-snaptest-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::set<std::string> list_dir(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out);
}

// Fills a KVM struct with a byte pattern, so every byte (padding included) is non-trivial.
template <class T>
void fill_pattern(T& v, uint8_t seed) {
  auto* b = reinterpret_cast<uint8_t*>(&v);
  for (size_t i = 0; i < sizeof v; ++i) b[i] = static_cast<uint8_t>(seed + i * 7);
}

template <class T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

TemplateState sample_state(uint64_t mem_size) {
  TemplateState s;
  s.host = HostKind::HardwareKvm;
  s.mem_size = mem_size;
  fill_pattern(s.vcpu.regs, 1);
  s.vcpu.regs.rip = 0xffffffff81000000;
  s.vcpu.regs.rsp = 0xffffc90000003f00;
  fill_pattern(s.vcpu.sregs, 2);
  s.vcpu.sregs.cr3 = 0x1000;
  fill_pattern(s.vcpu.fpu, 3);
  fill_pattern(s.vcpu.xsave, 4);
  fill_pattern(s.vcpu.xcrs, 5);
  fill_pattern(s.vcpu.lapic, 6);
  fill_pattern(s.vcpu.mp_state, 7);
  fill_pattern(s.vcpu.events, 8);
  fill_pattern(s.vcpu.debugregs, 9);
  for (uint32_t i = 0; i < 40; ++i) {
    s.vcpu.msrs.push_back(kvm_msr_entry{0xc0000080 + i, 0, 0x0123456789abcdefull * (i + 1)});
  }
  fill_pattern(s.vm.pic_master, 10);
  fill_pattern(s.vm.pic_slave, 11);
  fill_pattern(s.vm.ioapic, 12);
  fill_pattern(s.vm.pit, 13);
  fill_pattern(s.vm.clock, 14);
  s.vm.clock.clock = 0x1122334455667788;
  s.serial = SerialState{0x0f, 0x03, 0x0b, 0x5a, 0x01, 0x02, 1, 1};
  for (uint32_t i = 0; i < 30; ++i) {
    kvm_cpuid_entry2 e{};
    e.function = i < 20 ? i : 0x80000000 + i;
    e.index = i % 3;
    e.flags = i % 2;
    e.eax = 0xa0000000 + i, e.ebx = 0xb0000000 + i, e.ecx = 0xc0000000 + i, e.edx = 0xd0000000 + i;
    s.cpuid.push_back(e);
  }
  DeviceRecord rng;
  rng.spec.device_id = virtio::kDeviceRng;
  rng.transport.regs = {0x0f, 1, 1, 0, 0x130000000ull, 1, 0};
  rng.transport.queues.push_back({256, 1, 17, 17, 16, 1, 1, 0, 0x10000, 0x11000, 0x12000});
  s.devices.push_back(rng);
  DeviceRecord blk;
  blk.spec = {virtio::kDeviceBlock, "/images/debian.erofs", true, {0x803, 123456, 1 << 30, 1700000000123456789ull}};
  blk.transport.regs = {0x0f, 0, 1, 0, 0x130000264ull, 0, 2};
  blk.transport.queues.push_back({128, 1, 0xfffe, 0xfffd, 0xfff0, 1, 0, 0, 0x20000, 0x21000, 0x22000});
  s.devices.push_back(blk);
  return s;
}

// Mostly zero, with non-zero pages at the start, a run in the middle, a page
// that is non-zero only in its last byte, and the last page.
std::vector<uint8_t> sample_memory(uint64_t size) {
  std::vector<uint8_t> m(size, 0);
  // Every write only where it fits: ASan found this writing past small
  // images (16 KiB past a 64-page one).
  for (uint64_t i = 0; i < std::min(kPage, size); ++i) m[i] = static_cast<uint8_t>(i * 13 + 1);
  for (uint64_t i = 100 * kPage; i < std::min<uint64_t>(104 * kPage, size); ++i)
    m[i] = static_cast<uint8_t>(i ^ (i >> 12));
  if (size >= 8 * kPage) m[8 * kPage - 1] = 0x42;
  m[size - 1] = 0x99;
  return m;
}

void require_same_state(const TemplateState& a, const TemplateState& b) {
  CHECK(a.host == b.host);
  CHECK(a.mem_size == b.mem_size);
  CHECK(same_bytes(a.vcpu.regs, b.vcpu.regs));
  CHECK(same_bytes(a.vcpu.sregs, b.vcpu.sregs));
  CHECK(same_bytes(a.vcpu.fpu, b.vcpu.fpu));
  CHECK(same_bytes(a.vcpu.xsave, b.vcpu.xsave));
  CHECK(same_bytes(a.vcpu.xcrs, b.vcpu.xcrs));
  CHECK(same_bytes(a.vcpu.lapic, b.vcpu.lapic));
  CHECK(same_bytes(a.vcpu.mp_state, b.vcpu.mp_state));
  CHECK(same_bytes(a.vcpu.events, b.vcpu.events));
  CHECK(same_bytes(a.vcpu.debugregs, b.vcpu.debugregs));
  REQUIRE(a.vcpu.msrs.size() == b.vcpu.msrs.size());
  for (size_t i = 0; i < a.vcpu.msrs.size(); ++i) {
    CHECK(a.vcpu.msrs[i].index == b.vcpu.msrs[i].index);
    CHECK(a.vcpu.msrs[i].data == b.vcpu.msrs[i].data);
  }
  CHECK(same_bytes(a.vm.pic_master, b.vm.pic_master));
  CHECK(same_bytes(a.vm.pic_slave, b.vm.pic_slave));
  CHECK(same_bytes(a.vm.ioapic, b.vm.ioapic));
  CHECK(same_bytes(a.vm.pit, b.vm.pit));
  CHECK(same_bytes(a.vm.clock, b.vm.clock));
  CHECK(same_bytes(a.serial, b.serial));
  REQUIRE(a.cpuid.size() == b.cpuid.size());
  for (size_t i = 0; i < a.cpuid.size(); ++i) CHECK(same_bytes(a.cpuid[i], b.cpuid[i]));
  REQUIRE(a.devices.size() == b.devices.size());
  for (size_t i = 0; i < a.devices.size(); ++i) {
    const auto &x = a.devices[i], &y = b.devices[i];
    CHECK(x.spec.device_id == y.spec.device_id);
    CHECK(x.spec.path == y.spec.path);
    CHECK(x.spec.read_only == y.spec.read_only);
    CHECK(x.spec.identity == y.spec.identity);
    CHECK(same_bytes(x.transport.regs, y.transport.regs));
    REQUIRE(x.transport.queues.size() == y.transport.queues.size());
    for (size_t q = 0; q < x.transport.queues.size(); ++q) CHECK(same_bytes(x.transport.queues[q], y.transport.queues[q]));
  }
}

// Maps memory_fd MAP_PRIVATE, as a clone would, and compares with `image`.
bool mapped_memory_equals(const LoadedSnapshot& snap, const std::vector<uint8_t>& image) {
  void* p = ::mmap(nullptr, image.size(), PROT_READ, MAP_PRIVATE, snap.memory_fd.get(), 0);
  REQUIRE(p != MAP_FAILED);
  Mapping m(p, image.size());
  return std::memcmp(m.get(), image.data(), image.size()) == 0;
}

// Rewrites state.bin after `patch` edits its decoded header and/or payload,
// recomputing payload size and both checksums so that only the patch is wrong.
void patch_state(const std::string& dir,
                 const std::function<void(sd::Header&, std::vector<uint8_t>&)>& patch) {
  std::vector<uint8_t> bytes = read_file(dir + "/state.bin");
  REQUIRE(bytes.size() >= sd::kHeaderSize);
  sd::Header h = sd::decode_header(bytes);
  std::vector<uint8_t> payload(bytes.begin() + sd::kHeaderSize, bytes.end());
  patch(h, payload);
  h.payload_size = payload.size();
  h.payload_hash = sd::payload_checksum(payload);
  auto header = sd::encode_header(h);
  std::vector<uint8_t> out(header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  write_file(dir + "/state.bin", out);
}

// Offset in the payload of the section with `tag` (its tag field).
size_t section_offset(const std::vector<uint8_t>& payload, uint32_t tag) {
  size_t at = 0;
  while (at + 8 <= payload.size()) {
    uint32_t t, len;
    std::memcpy(&t, &payload[at], 4);
    std::memcpy(&len, &payload[at + 4], 4);
    if (t == tag) return at;
    at += 8 + len;
  }
  FAIL("no section " << tag);
  return 0;
}

constexpr uint32_t kTagMsrs = 15, kTagSerial = 17, kTagDevices = 18;

// A small valid snapshot in a temp dir, for the rejection tests.
struct Fixture {
  TempDir tmp;
  std::string dir = tmp / "snap";
  std::string state_bin = dir + "/state.bin";
  std::string memory_bin = dir + "/memory.bin";
  uint64_t mem_size = 1 << 20;
  TemplateState state = sample_state(mem_size);
  std::vector<uint8_t> memory = sample_memory(mem_size);

  Fixture() { REQUIRE(write_snapshot(dir, state, memory)); }

  std::string load_error(HostKind host = HostKind::HardwareKvm, bool verify_memory = true) const {
    return error_of(read_snapshot(dir, host, verify_memory));
  }
};

void truncate_file(const std::string& path, uint64_t len) { REQUIRE(::truncate(path.c_str(), len) == 0); }

void flip_byte(const std::string& path, uint64_t offset) {
  std::vector<uint8_t> b = read_file(path);
  REQUIRE(offset < b.size());
  b[offset] ^= 0x20;
  write_file(path, b);
}

}  // namespace

TEST_CASE("snapshot: round trip of state and memory") {
  TempDir tmp;
  const uint64_t size = 1 << 20;
  TemplateState state = sample_state(size);
  std::vector<uint8_t> memory = sample_memory(size);
  SECTION("hardware-kvm host") {}
  SECTION("nested-pvm host") { state.host = HostKind::NestedPvm; }

  std::string dir = tmp / "snap";
  REQUIRE(error_of(write_snapshot(dir, state, memory)) == "<no error>");
  CHECK(list_dir(dir) == std::set<std::string>{"state.bin", "memory.bin"});

  auto snap = read_snapshot(dir, state.host);
  REQUIRE(error_of(snap) == "<no error>");
  require_same_state(state, snap->state);
  REQUIRE(snap->memory_fd.valid());
  CHECK((::fcntl(snap->memory_fd.get(), F_GETFL) & O_ACCMODE) == O_RDONLY);
  CHECK(mapped_memory_equals(*snap, memory));
}

TEST_CASE("snapshot: CPUID padding is not stored and MSR reserved words are") {
  TempDir tmp;
  TemplateState state = sample_state(kPage);
  state.cpuid[0].padding[0] = 7;
  state.vcpu.msrs[0].reserved = 9;
  std::vector<uint8_t> memory(kPage, 0);
  REQUIRE(write_snapshot(tmp / "snap", state, memory));
  auto snap = read_snapshot(tmp / "snap", HostKind::HardwareKvm);
  REQUIRE(snap);
  CHECK(snap->state.cpuid[0].padding[0] == 0);
  CHECK(snap->state.cpuid[0].eax == state.cpuid[0].eax);
  CHECK(snap->state.vcpu.msrs[0].reserved == 9);
}

TEST_CASE("snapshot: memory.bin is sparse and exactly mem_size bytes") {
  TempDir tmp;
  const uint64_t size = 64 << 20;
  std::vector<uint8_t> memory = sample_memory(size);
  REQUIRE(write_snapshot(tmp / "snap", sample_state(size), memory));

  struct stat st;
  REQUIRE(::stat((tmp / "snap/memory.bin").c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_size) == size);
  // 7 non-zero pages (28 KiB) of 64 MiB: allow generous filesystem slack.
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < 1 << 20);

  auto snap = read_snapshot(tmp / "snap", HostKind::HardwareKvm);
  REQUIRE(snap);
  CHECK(mapped_memory_equals(*snap, memory));
}

TEST_CASE("snapshot: memory checksum definition") {
  const uint64_t size = 64 * kPage + 100;  // last page is short
  std::vector<uint8_t> image = sample_memory(size);

  SECTION("hash of (u64 LE page index, page bytes) for each non-zero page, in order") {
    std::vector<uint8_t> concat;
    for (uint64_t i = 0; i * kPage < size; ++i) {
      uint64_t len = std::min(kPage, size - i * kPage);
      const uint8_t* p = image.data() + i * kPage;
      if (std::all_of(p, p + len, [](uint8_t b) { return b == 0; })) continue;
      for (int k = 0; k < 8; ++k) concat.push_back(static_cast<uint8_t>(i >> (8 * k)));
      concat.insert(concat.end(), p, p + len);
    }
    CHECK(sd::memory_checksum(image) == XXH3_64bits(concat.data(), concat.size()));
  }
  SECTION("a page's position matters") {
    std::vector<uint8_t> moved = image;
    std::copy_n(image.begin(), kPage, moved.begin() + 10 * kPage);
    std::fill_n(moved.begin(), kPage, 0);
    CHECK(sd::memory_checksum(moved) != sd::memory_checksum(image));
  }
  SECTION("holes and written zero pages hash alike, from a file or from memory") {
    TempDir tmp;
    // A dense file: every page written, zero pages included.
    write_file(tmp / "dense", image);
    UniqueFd dense(::open((tmp / "dense").c_str(), O_RDONLY));
    REQUIRE(dense);
    auto h_dense = sd::memory_checksum_fd(dense.get(), size, "dense");
    REQUIRE(h_dense);
    CHECK(*h_dense == sd::memory_checksum(image));
    // A sparse file: only the non-zero pages written.
    UniqueFd sparse(::open((tmp / "sparse").c_str(), O_RDWR | O_CREAT, 0644));
    REQUIRE(::ftruncate(sparse.get(), size) == 0);
    for (uint64_t off = 0; off < size; off += kPage) {
      uint64_t len = std::min(kPage, size - off);
      if (std::any_of(&image[off], &image[off] + len, [](uint8_t b) { return b != 0; })) {
        REQUIRE(::pwrite(sparse.get(), &image[off], len, off) == static_cast<ssize_t>(len));
      }
    }
    auto h_sparse = sd::memory_checksum_fd(sparse.get(), size, "sparse");
    REQUIRE(h_sparse);
    CHECK(*h_sparse == *h_dense);
  }
}

TEST_CASE("snapshot: write refuses an existing directory unless replacing a snapshot") {
  TempDir tmp;
  std::string dir = tmp / "snap";
  TemplateState state = sample_state(4 * kPage);
  std::vector<uint8_t> memory = sample_memory(4 * kPage);

  SECTION("an unrelated directory is left untouched, even with replace") {
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    write_file(dir + "/keep", {1, 2, 3});
    CHECK_THAT(error_of(write_snapshot(dir, state, memory)), Contains("already exists"));
    CHECK_THAT(error_of(write_snapshot(dir, state, memory, true)),
               Contains("not a snapshot directory") && Contains("keep"));
    CHECK(list_dir(dir) == std::set<std::string>{"keep"});
    CHECK(read_file(dir + "/keep") == std::vector<uint8_t>{1, 2, 3});
  }
  SECTION("an existing snapshot: kept without replace, swapped with it") {
    REQUIRE(write_snapshot(dir, state, memory));
    auto before = read_file(dir + "/state.bin");
    TemplateState state2 = state;
    state2.vcpu.regs.rip = 0x1234;
    state2.cpuid.pop_back();
    CHECK_THAT(error_of(write_snapshot(dir, state2, memory)), Contains("already exists"));
    CHECK(read_file(dir + "/state.bin") == before);

    REQUIRE(error_of(write_snapshot(dir, state2, memory, true)) == "<no error>");
    auto snap = read_snapshot(dir, HostKind::HardwareKvm);
    REQUIRE(snap);
    require_same_state(state2, snap->state);
  }
  CHECK(list_dir(tmp.path()) == std::set<std::string>{"snap"});  // no temp dirs
}

TEST_CASE("snapshot: no temp dir remains after success or failure") {
  TempDir tmp;
  const uint64_t size = 64 * kPage;
  TemplateState state = sample_state(size);
  std::vector<uint8_t> memory = sample_memory(size);

  SECTION("success") {
    REQUIRE(write_snapshot(tmp / "snap/", state, memory));  // trailing slash: still a sibling temp
    CHECK(list_dir(tmp.path()) == std::set<std::string>{"snap"});
  }
  SECTION("parent is not a directory") {
    write_file(tmp / "file", {0});
    CHECK_THAT(error_of(write_snapshot(tmp / "file/snap", state, memory)), Contains("Not a directory"));
    CHECK(list_dir(tmp.path()) == std::set<std::string>{"file"});
  }
  SECTION("parent does not exist") {
    CHECK_THAT(error_of(write_snapshot(tmp / "nope/snap", state, memory)),
               Contains("No such file or directory"));
    CHECK(list_dir(tmp.path()).empty());
  }
  SECTION("writing memory.bin fails midway (RLIMIT_FSIZE)") {
    struct rlimit old;
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 8 * kPage;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    auto r = write_snapshot(tmp / "snap", state, memory);
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    CHECK_THAT(error_of(r), Contains("memory.bin") && Contains("File too large"));
    CHECK(list_dir(tmp.path()).empty());
  }
  SECTION("too many MSRs") {
    state.vcpu.msrs.resize(sd::kMaxMsrs + 1);
    CHECK_THAT(error_of(write_snapshot(tmp / "snap", state, memory)), Contains("4097 MSRs"));
    CHECK(list_dir(tmp.path()).empty());
  }
  SECTION("memory image size differs from mem_size") {
    memory.pop_back();
    CHECK_THAT(error_of(write_snapshot(tmp / "snap", state, memory)), Contains("mem_size"));
    CHECK(list_dir(tmp.path()).empty());
  }
}

TEST_CASE("snapshot: damaged state.bin is rejected with the cause") {
  Fixture f;
  const uint64_t full = read_file(f.state_bin).size();
  const uint64_t hdr = sd::kHeaderSize;

  SECTION("empty") {
    truncate_file(f.state_bin, 0);
    CHECK_THAT(f.load_error(), Contains("state.bin: truncated header (0 of 120 bytes)"));
  }
  SECTION("mid-header") {
    truncate_file(f.state_bin, 60);
    CHECK_THAT(f.load_error(), Contains("state.bin: truncated header (60 of 120 bytes)"));
  }
  SECTION("mid-payload") {
    truncate_file(f.state_bin, hdr + 10);
    CHECK_THAT(f.load_error(),
               Contains(fmt::format("state.bin: truncated payload (10 of {} bytes)", full - hdr)));
  }
  SECTION("one byte short") {
    truncate_file(f.state_bin, full - 1);
    CHECK_THAT(f.load_error(), Contains("state.bin: truncated payload"));
  }
  SECTION("trailing bytes") {
    auto b = read_file(f.state_bin);
    b.push_back(0);
    write_file(f.state_bin, b);
    CHECK_THAT(f.load_error(), Contains("state.bin: 1 trailing bytes"));
  }
  SECTION("flipped byte in the header") {
    flip_byte(f.state_bin, 84);  // inside mem_size
    CHECK_THAT(f.load_error(), Contains("state.bin: header checksum mismatch"));
  }
  SECTION("flipped byte in the payload") {
    flip_byte(f.state_bin, hdr + 200);
    CHECK_THAT(f.load_error(), Contains("state.bin: payload checksum mismatch"));
  }
  SECTION("wrong magic") {
    flip_byte(f.state_bin, 0);
    CHECK_THAT(f.load_error(), Contains("state.bin: bad magic"));
  }
  SECTION("wrong version, checksums intact") {
    patch_state(f.dir, [](sd::Header& h, std::vector<uint8_t>&) { h.version = 7; });
    CHECK_THAT(f.load_error(), Contains("state.bin: format version 7, this vicvmm reads 2"));
  }
  SECTION("1 TiB of guest memory declared, checksums intact") {
    patch_state(f.dir, [](sd::Header& h, std::vector<uint8_t>&) { h.mem_size = 1ull << 40; });
    CHECK_THAT(f.load_error(), Contains("state.bin: guest memory of 1099511627776 bytes: vicvmm runs 4 KiB "
                                        "multiples up to 64 GiB"));
  }
  SECTION("a version 1 snapshot (before devices)") {
    patch_state(f.dir, [](sd::Header& h, std::vector<uint8_t>&) { h.version = 1; });
    CHECK_THAT(f.load_error(), Contains("state.bin: format version 1, this vicvmm reads 2"));
  }
  SECTION("different KVM struct layout") {
    patch_state(f.dir, [](sd::Header& h, std::vector<uint8_t>&) { h.struct_sizes[1] += 8; });
    CHECK_THAT(f.load_error(), Contains("state.bin: written with sizeof(kvm_sregs) ="));
  }
  SECTION("wrong host kind") {
    CHECK_THAT(f.load_error(HostKind::NestedPvm),
               Contains("state.bin: snapshot was taken on a hardware-kvm host, this is a nested-pvm host"));
  }
  SECTION("unknown host kind") {
    patch_state(f.dir, [](sd::Header& h, std::vector<uint8_t>&) { h.host_kind = 9; });
    CHECK_THAT(f.load_error(), Contains("state.bin: unknown host kind 9"));
  }
  SECTION("MSR count disagrees with the section length") {
    // The count is the first u32 of the section body; the section holds 40 entries.
    const int delta = GENERATE(1, -1);
    patch_state(f.dir, [&](sd::Header&, std::vector<uint8_t>& p) {
      p[section_offset(p, kTagMsrs) + 8] += delta;
    });
    const std::string expect = delta > 0 ? "41 entries need 664 bytes, the section has 648"
                                         : "39 entries need 632 bytes, the section has 648";
    CHECK_THAT(f.load_error(), Contains("state.bin: section 'msrs': " + expect));
  }
  SECTION("MSR count over the limit") {
    patch_state(f.dir, [](sd::Header&, std::vector<uint8_t>& p) {
      uint32_t huge = 100000;
      std::memcpy(&p[section_offset(p, kTagMsrs) + 8], &huge, 4);
    });
    CHECK_THAT(f.load_error(), Contains("section 'msrs': 100000 entries, at most 4096"));
  }
  SECTION("missing section") {
    patch_state(f.dir, [](sd::Header&, std::vector<uint8_t>& p) {
      p.resize(section_offset(p, kTagDevices));  // devices is last
    });
    CHECK_THAT(f.load_error(), Contains("state.bin: missing section 'devices'"));
  }
  SECTION("duplicate section") {
    patch_state(f.dir, [](sd::Header&, std::vector<uint8_t>& p) {
      std::vector<uint8_t> last(p.begin() + section_offset(p, kTagDevices), p.end());
      p.insert(p.end(), last.begin(), last.end());
    });
    CHECK_THAT(f.load_error(), Contains("state.bin: duplicate section 'devices'"));
  }
  SECTION("unknown section tag") {
    patch_state(f.dir, [](sd::Header&, std::vector<uint8_t>& p) { p[0] = 99; });
    CHECK_THAT(f.load_error(), Contains("state.bin: unknown section tag 99"));
  }
  SECTION("section longer than the payload") {
    patch_state(f.dir, [](sd::Header&, std::vector<uint8_t>& p) {
      p[section_offset(p, kTagDevices) + 5] += 1;  // length + 256
    });
    CHECK_THAT(f.load_error(), Contains("state.bin: section 'devices' claims"));
  }
  SECTION("devices: too many, an unknown device, a truncated one, a hostile path length") {
    const auto original = read_file(f.state_bin);
    auto devices_error = [&](auto edit) {
      write_file(f.state_bin, original);
      patch_state(f.dir, [&](sd::Header&, std::vector<uint8_t>& p) { edit(p, section_offset(p, kTagDevices) + 8); });
      return f.load_error();
    };
    CHECK_THAT(devices_error([](std::vector<uint8_t>& p, size_t at) { p[at] = 17; }),
               Contains("section 'devices': 17 devices, at most 16"));
    CHECK_THAT(devices_error([](std::vector<uint8_t>& p, size_t at) { p[at + 4] = 9; }),
               Contains("section 'devices': unknown device id 9"));
    CHECK_THAT(devices_error([](std::vector<uint8_t>& p, size_t at) { p[at + 12 + 3] = 0x7f; }),
               Contains("section 'devices': a 2130706432-byte path, at most 4096"));
    CHECK_THAT(devices_error([](std::vector<uint8_t>& p, size_t at) {
                 uint32_t len;
                 std::memcpy(&len, &p[at - 4], 4);
                 p.resize(p.size() - 10);  // the last queue loses its tail
                 len -= 10;
                 std::memcpy(&p[at - 4], &len, 4);
               }),
               Contains("section 'devices': truncated at the queues"));
  }
  SECTION("missing state.bin") {
    REQUIRE(::unlink(f.state_bin.c_str()) == 0);
    CHECK_THAT(f.load_error(), Contains("state.bin: No such file or directory"));
  }
}

TEST_CASE("snapshot: damaged memory.bin or directory is rejected with the cause") {
  Fixture f;

  SECTION("memory.bin truncated") {
    truncate_file(f.memory_bin, 1000);
    CHECK_THAT(f.load_error(), Contains("memory.bin: 1000 bytes, expected 1048576"));
  }
  SECTION("memory.bin byte flipped in a data page") {
    flip_byte(f.memory_bin, 100 * kPage + 17);
    CHECK_THAT(f.load_error(), Contains("memory.bin: memory checksum mismatch"));
    CHECK(error_of(read_snapshot(f.dir, HostKind::HardwareKvm, false)) == "<no error>");
  }
  SECTION("memory.bin byte set in a hole") {
    UniqueFd fd(::open(f.memory_bin.c_str(), O_WRONLY));
    uint8_t b = 1;
    REQUIRE(::pwrite(fd.get(), &b, 1, 50 * kPage) == 1);
    CHECK_THAT(f.load_error(), Contains("memory.bin: memory checksum mismatch"));
  }
  SECTION("missing memory.bin") {
    REQUIRE(::unlink(f.memory_bin.c_str()) == 0);
    CHECK_THAT(f.load_error(), Contains("memory.bin: No such file or directory"));
  }
  SECTION("missing directory") {
    fs::remove_all(f.dir);
    CHECK_THAT(f.load_error(), Contains(f.dir + ": No such file or directory"));
  }
  SECTION("not a directory") {
    fs::remove_all(f.dir);
    write_file(f.dir, {0});
    CHECK_THAT(f.load_error(), Contains(f.dir + ": not a directory"));
  }
}

TEST_CASE("snapshot: read_snapshot never modifies the snapshot") {
  Fixture f;
  // Backdate the files, so a write within this second would still show.
  for (const std::string& p : {f.state_bin, f.memory_bin, f.dir}) {
    struct timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
    REQUIRE(::utimensat(AT_FDCWD, p.c_str(), times, 0) == 0);
  }
  auto snapshot_of = [&](const std::string& p) {
    struct stat st;
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return std::make_tuple(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_size, st.st_blocks, read_file(p));
  };
  auto state_before = snapshot_of(f.state_bin);
  auto memory_before = snapshot_of(f.memory_bin);
  struct stat dir_before;
  REQUIRE(::stat(f.dir.c_str(), &dir_before) == 0);

  CHECK(read_snapshot(f.dir, HostKind::HardwareKvm));
  CHECK(read_snapshot(f.dir, HostKind::HardwareKvm, false));
  CHECK_FALSE(read_snapshot(f.dir, HostKind::NestedPvm));

  CHECK(snapshot_of(f.state_bin) == state_before);
  CHECK(snapshot_of(f.memory_bin) == memory_before);
  struct stat dir_after;
  REQUIRE(::stat(f.dir.c_str(), &dir_after) == 0);
  CHECK(dir_after.st_mtim.tv_sec == dir_before.st_mtim.tv_sec);
  CHECK(list_dir(f.dir) == std::set<std::string>{"state.bin", "memory.bin"});
}
