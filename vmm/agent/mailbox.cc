#include "vmm/agent/mailbox.h"

#include <cstring>

#include "vmm/memory/guest_memory.h"

namespace vicvmm {

namespace {
constexpr uint64_t kPage = 4096;
constexpr size_t kInlineCapacity = sizeof(vic_mailbox::strings);
}  // namespace

Result<Mailbox> build_mailbox(const AgentRequest& req) {
  Mailbox out;
  vic_mailbox& mb = out.page;
  std::memset(&mb, 0, sizeof(mb));
  mb.magic = VIC_MAILBOX_MAGIC;
  mb.version = VIC_MAILBOX_VERSION;
  mb.flags = req.flags & ~VIC_MB_EXT_STRINGS;
  mb.argc = static_cast<uint32_t>(req.argv.size());
  mb.envc = static_cast<uint32_t>(req.env.size());
  mb.clone_id = req.clone_id;
  for (size_t i = 0; i < 4; ++i) mb.seed[i] = req.seed[i];
  mb.wallclock_ns = req.wallclock_ns;
  mb.generation = req.generation;

  std::string strings;
  auto put = [&](const std::string& s, const char* what) -> Result<> {
    if (s.find('\0') != std::string::npos) return err("mailbox: {} contains a NUL byte", what);
    strings.append(s);
    strings.push_back('\0');
    if (strings.size() > VIC_MAILBOX_EXT_SIZE)
      return err("mailbox: command, environment, hostname, working directory and user exceed {} KiB",
                 VIC_MAILBOX_EXT_SIZE / 1024);
    return {};
  };
  for (const auto& a : req.argv) VIC_TRY(put(a, "an argument"));
  for (const auto& e : req.env) {
    if (e.find('=') == std::string::npos) return err("mailbox: environment entry '{}' has no '='", e);
    VIC_TRY(put(e, "an environment entry"));
  }
  VIC_TRY(put(req.hostname, "the hostname"));
  if (!req.workdir.empty() || !req.user.empty()) {
    VIC_TRY(put(req.workdir, "the working directory"));
    VIC_TRY(put(req.user, "the user"));
  }
  mb.strings_len = static_cast<uint32_t>(strings.size());
  if (strings.size() <= kInlineCapacity) {
    std::memcpy(mb.strings, strings.data(), strings.size());  // one page to write: the common case
  } else {
    mb.flags |= VIC_MB_EXT_STRINGS;
    out.ext.assign(strings.begin(), strings.end());
  }
  return out;
}

Result<std::vector<uint64_t>> write_mailbox(GuestMemory& mem, const Mailbox& mb) {
  std::vector<uint64_t> pages;
  if (!mb.ext.empty()) {
    VIC_TRY(mem.write(VIC_MAILBOX_EXT_GPA, std::span<const uint8_t>(
                                               reinterpret_cast<const uint8_t*>(mb.ext.data()), mb.ext.size())));
    for (uint64_t gpa = VIC_MAILBOX_EXT_GPA; gpa < VIC_MAILBOX_EXT_GPA + mb.ext.size(); gpa += kPage)
      pages.push_back(gpa / kPage);
  }
  VIC_TRY(mem.write_obj(VIC_MAILBOX_GPA, mb.page));
  pages.push_back(VIC_MAILBOX_GPA / kPage);
  return pages;
}

Result<AgentRequest> parse_mailbox(const vic_mailbox& mb, std::span<const char> ext) {
  if (mb.magic != VIC_MAILBOX_MAGIC) return err("mailbox: bad magic {:#x}", mb.magic);
  if (mb.version != VIC_MAILBOX_VERSION) return err("mailbox: version {} (expected {})", mb.version, VIC_MAILBOX_VERSION);
  const bool in_ext = mb.flags & VIC_MB_EXT_STRINGS;
  const char* base = in_ext ? ext.data() : mb.strings;
  const size_t capacity = in_ext ? ext.size() : sizeof(mb.strings);
  if (in_ext && ext.size() > VIC_MAILBOX_EXT_SIZE) return err("mailbox: extension of {} bytes too large", ext.size());
  if (mb.strings_len > capacity) return err("mailbox: strings_len {} too large", mb.strings_len);
  AgentRequest req;
  req.flags = mb.flags;
  req.clone_id = mb.clone_id;
  for (size_t i = 0; i < 4; ++i) req.seed[i] = mb.seed[i];
  req.wallclock_ns = mb.wallclock_ns;
  req.generation = mb.generation;

  size_t pos = 0;
  auto next = [&](std::string& out, bool optional) -> Result<> {
    if (optional && pos == mb.strings_len) return {};
    if (pos >= mb.strings_len) return err("mailbox: string table truncated");
    const void* nul = std::memchr(base + pos, '\0', mb.strings_len - pos);
    if (!nul) return err("mailbox: string table truncated");
    size_t len = static_cast<size_t>(static_cast<const char*>(nul) - (base + pos));
    out.assign(base + pos, len);
    pos += len + 1;
    return {};
  };
  // argc + envc strings, each at least one byte: bounds the counts.
  if (static_cast<uint64_t>(mb.argc) + mb.envc > mb.strings_len)
    return err("mailbox: argc {} / envc {} do not fit in {} bytes", mb.argc, mb.envc, mb.strings_len);
  req.argv.resize(mb.argc);
  for (auto& a : req.argv) VIC_TRY(next(a, false));
  req.env.resize(mb.envc);
  for (auto& e : req.env) VIC_TRY(next(e, false));
  VIC_TRY(next(req.hostname, true));
  VIC_TRY(next(req.workdir, true));
  VIC_TRY(next(req.user, true));
  return req;
}

}  // namespace vicvmm
