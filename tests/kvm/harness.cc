#include "tests/kvm/harness.h"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "vmm/linux_boot.h"

#ifndef VICVMM_TEST_GUESTS_DIR
#define VICVMM_TEST_GUESTS_DIR ""
#endif

namespace vicvmm::test {

const Kvm& kvm() {
  static const Kvm k = [] {
    auto r = Kvm::open();
    if (!r) {
      FAIL("opening /dev/kvm: " << r.error().message);
    }
    return std::move(*r);
  }();
  return k;
}

std::vector<uint8_t> guest_image(const std::string& name) {
  const char* env = std::getenv("VICVMM_TEST_GUESTS");
  std::string dir = env && *env ? env : VICVMM_TEST_GUESTS_DIR;
  std::string path = dir + "/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  INFO("test guest " << path << " (set VICVMM_TEST_GUESTS to the build's guest/tests directory)");
  REQUIRE(in.good());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(!bytes.empty());
  REQUIRE(bytes.size() < TG_STACK_TOP - TG_LOAD_GPA);
  return bytes;
}

MachineConfig tiny_config() {
  MachineConfig cfg;
  cfg.mem_size = kTinyMemSize;
  cfg.vcpus = 1;
  cfg.irqchip = false;
  cfg.console_fd = -1;
  cfg.timeout = kSafetyTimeout;
  return cfg;
}

std::unique_ptr<Machine> boot_guest(const MachineConfig& cfg, const std::string& name, uint64_t rsi) {
  auto image = guest_image(name);
  auto created = Machine::create(kvm(), cfg);
  REQUIRE_OK(created);
  std::unique_ptr<Machine> m = std::move(*created);
  REQUIRE_OK(m->memory().write(TG_LOAD_GPA, image));
  REQUIRE_OK(enter_long_mode(*m, TG_LOAD_GPA, rsi));
  return m;
}

RunResult run_guest(Machine& m, bool expect_timeout) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = m.run();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE_OK(r);
  UNSCOPED_INFO("stopped after " << secs << " s: " << stop_reason_name(r->reason) << " (" << r->detail << ")\n"
                                 << m.stats_report());
  if (!expect_timeout) CHECK(r->reason != StopReason::Timeout);
  return {*r, secs};
}

uint64_t read_u64(const Machine& m, uint64_t gpa) {
  auto v = m.memory().read_obj<uint64_t>(gpa);
  REQUIRE_OK(v);
  return *v;
}

uint32_t read_u32(const Machine& m, uint64_t gpa) {
  auto v = m.memory().read_obj<uint32_t>(gpa);
  REQUIRE_OK(v);
  return *v;
}

void Recorder::read(uint64_t, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  log_.push_back({false, offset, data.size(), 0});
  for (auto& b : data) b = 0;
}

void Recorder::write(uint64_t, uint64_t offset, std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t{data[i]} << (8 * i);
  std::lock_guard lock(mu_);
  log_.push_back({true, offset, data.size(), v});
}

std::vector<Recorder::Access> Recorder::accesses() const {
  std::lock_guard lock(mu_);
  return log_;
}

std::ostream& operator<<(std::ostream& os, const Recorder::Access& a) {
  return os << (a.write ? "write" : "read") << " +" << a.offset << " size " << a.size << " value 0x" << std::hex
            << a.value << std::dec;
}

}  // namespace vicvmm::test
