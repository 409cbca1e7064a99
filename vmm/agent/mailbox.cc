#include "vmm/agent/mailbox.h"

#include <cstring>

namespace vicvmm {

Result<vic_mailbox> build_mailbox(const AgentRequest& req) {
  vic_mailbox mb;
  std::memset(&mb, 0, sizeof(mb));
  mb.magic = VIC_MAILBOX_MAGIC;
  mb.version = VIC_MAILBOX_VERSION;
  mb.flags = req.flags;
  mb.argc = static_cast<uint32_t>(req.argv.size());
  mb.envc = static_cast<uint32_t>(req.env.size());
  mb.clone_id = req.clone_id;
  for (size_t i = 0; i < 4; ++i) mb.seed[i] = req.seed[i];
  mb.wallclock_ns = req.wallclock_ns;
  mb.generation = req.generation;

  size_t used = 0;
  auto put = [&](const std::string& s, const char* what) -> Result<> {
    if (s.find('\0') != std::string::npos) return err("mailbox: {} contains a NUL byte", what);
    if (s.size() + 1 > sizeof(mb.strings) - used)
      return err("mailbox: command, environment and hostname exceed {} bytes", sizeof(mb.strings));
    std::memcpy(mb.strings + used, s.c_str(), s.size() + 1);
    used += s.size() + 1;
    return {};
  };
  for (const auto& a : req.argv) VIC_TRY(put(a, "an argument"));
  for (const auto& e : req.env) {
    if (e.find('=') == std::string::npos) return err("mailbox: environment entry '{}' has no '='", e);
    VIC_TRY(put(e, "an environment entry"));
  }
  VIC_TRY(put(req.hostname, "the hostname"));
  mb.strings_len = static_cast<uint32_t>(used);
  return mb;
}

Result<AgentRequest> parse_mailbox(const vic_mailbox& mb) {
  if (mb.magic != VIC_MAILBOX_MAGIC) return err("mailbox: bad magic {:#x}", mb.magic);
  if (mb.version != VIC_MAILBOX_VERSION) return err("mailbox: version {} (expected {})", mb.version, VIC_MAILBOX_VERSION);
  if (mb.strings_len > sizeof(mb.strings)) return err("mailbox: strings_len {} too large", mb.strings_len);
  AgentRequest req;
  req.flags = mb.flags;
  req.clone_id = mb.clone_id;
  for (size_t i = 0; i < 4; ++i) req.seed[i] = mb.seed[i];
  req.wallclock_ns = mb.wallclock_ns;
  req.generation = mb.generation;

  size_t pos = 0;
  auto next = [&](std::string& out) -> Result<> {
    if (pos >= mb.strings_len) return err("mailbox: string table truncated");
    const void* nul = std::memchr(mb.strings + pos, '\0', mb.strings_len - pos);
    if (!nul) return err("mailbox: string table truncated");
    size_t len = static_cast<size_t>(static_cast<const char*>(nul) - (mb.strings + pos));
    out.assign(mb.strings + pos, len);
    pos += len + 1;
    return {};
  };
  // argc + envc + hostname strings, each at least one byte: bounds the counts.
  if (static_cast<uint64_t>(mb.argc) + mb.envc + 1 > mb.strings_len)
    return err("mailbox: argc {} / envc {} do not fit in {} bytes", mb.argc, mb.envc, mb.strings_len);
  req.argv.resize(mb.argc);
  for (auto& a : req.argv) VIC_TRY(next(a));
  req.env.resize(mb.envc);
  for (auto& e : req.env) VIC_TRY(next(e));
  VIC_TRY(next(req.hostname));
  return req;
}

}  // namespace vicvmm
