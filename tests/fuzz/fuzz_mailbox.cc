// libFuzzer target: parse_mailbox() on a mailbox page (and extension area)
// the guest could have rewritten: the same validation vic-init applies.
//
// Input layout:
//   [0]       control: bit 0 the header is taken as is (else magic and
//             version are made valid and the flags/strings_len set below),
//             bit 1 the strings are in the extension (VIC_MB_EXT_STRINGS),
//             bit 2 strings_len is taken from the header (else it is the
//             number of string bytes given),
//             bit 3 pass an extension area even when the page does not use it
//   [1..129)  the page's first 128 bytes (magic .. reserved), zero-padded
//   rest      the strings: into the page (at most its capacity) or the
//             extension area (a buffer of exactly that size)
//
// On success: argc/envc strings came back, none holds a NUL, they fit in
// strings_len, and build_mailbox() of the result parses back to the same
// request (when every env entry has the '=' build_mailbox requires).
// Run: tools/fuzz mailbox [SECONDS]
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "vmm/agent/mailbox.h"

using namespace vicvmm;

namespace {

constexpr size_t kHeaderBytes = offsetof(vic_mailbox, strings);
static_assert(kHeaderBytes == 128);

bool same_request(const AgentRequest& a, const AgentRequest& b) {
  return a.argv == b.argv && a.env == b.env && a.hostname == b.hostname && a.workdir == b.workdir &&
         a.user == b.user && (a.flags & ~VIC_MB_EXT_STRINGS) == (b.flags & ~VIC_MB_EXT_STRINGS) &&
         a.clone_id == b.clone_id && a.seed == b.seed && a.wallclock_ns == b.wallclock_ns &&
         a.generation == b.generation;
}

void check_parsed(const vic_mailbox& mb, size_t capacity, const AgentRequest& req) {
  FUZZ_CHECK(mb.strings_len <= capacity);
  FUZZ_CHECK(req.argv.size() == mb.argc && req.env.size() == mb.envc);
  uint64_t bytes = 0;
  bool env_ok = true;
  auto count = [&](const std::string& s) {
    FUZZ_CHECK(s.find('\0') == std::string::npos);
    bytes += s.size() + 1;
  };
  for (const auto& s : req.argv) count(s);
  for (const auto& s : req.env) {
    count(s);
    env_ok = env_ok && s.find('=') != std::string::npos;
  }
  // Trailing strings may be absent: their NULs are not counted.
  for (const auto* s : {&req.hostname, &req.workdir, &req.user}) {
    FUZZ_CHECK(s->find('\0') == std::string::npos);
    bytes += s->size();
  }
  FUZZ_CHECK(bytes <= mb.strings_len);
  FUZZ_CHECK(req.clone_id == mb.clone_id && req.generation == mb.generation && req.wallclock_ns == mb.wallclock_ns);

  if (!env_ok) return;
  auto built = build_mailbox(req);
  FUZZ_CHECK(built.has_value());
  const bool in_ext = built->page.flags & VIC_MB_EXT_STRINGS;
  FUZZ_CHECK(in_ext == !built->ext.empty());
  FUZZ_CHECK(built->page.strings_len <= (in_ext ? VIC_MAILBOX_EXT_SIZE : sizeof(mb.strings)));
  auto again = parse_mailbox(built->page, built->ext);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(same_request(req, *again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  data++, size--;
  // The page on the heap, exactly one page: a read past its end is caught.
  auto mb = std::make_unique<vic_mailbox>();
  std::memset(mb.get(), 0, sizeof *mb);
  size_t head = std::min(size, kHeaderBytes);
  std::memcpy(mb.get(), data, head);
  data += head, size -= head;

  const bool to_ext = control & 2;
  std::vector<char> ext;
  size_t given;
  if (to_ext) {
    ext.assign(data, data + size);
    given = size;
  } else {
    given = std::min(size, sizeof mb->strings);
    std::memcpy(mb->strings, data, given);
    if (control & 8) ext.assign(data, data + size);
  }
  if (!(control & 1)) {
    mb->magic = VIC_MAILBOX_MAGIC;
    mb->version = VIC_MAILBOX_VERSION;
    mb->flags = (mb->flags & ~VIC_MB_EXT_STRINGS) | (to_ext ? VIC_MB_EXT_STRINGS : 0);
    if (!(control & 4)) mb->strings_len = static_cast<uint32_t>(given);
  }
  // An exactly-sized copy, so that reading past the extension is caught too.
  std::unique_ptr<char[]> ext_copy(new char[ext.size() + (ext.empty() ? 1 : 0)]);
  if (!ext.empty()) std::memcpy(ext_copy.get(), ext.data(), ext.size());
  std::span<const char> ext_span(ext.empty() ? nullptr : ext_copy.get(), ext.size());

  auto req = parse_mailbox(*mb, ext_span);
  if (!req) return 0;
  const bool in_ext = mb->flags & VIC_MB_EXT_STRINGS;
  check_parsed(*mb, in_ext ? ext.size() : sizeof mb->strings, *req);
  return 0;
}
