#include "image/container_spec.h"

#include <algorithm>

namespace vicvmm::image {

namespace {
std::string env_key(const std::string& entry) { return entry.substr(0, entry.find('=')); }
}  // namespace

std::vector<std::string> merge_env(const std::vector<std::string>& base, const std::vector<std::string>& overrides) {
  std::vector<std::string> out;
  auto put = [&](const std::string& entry) {
    if (entry.find('=') == std::string::npos) return;  // "KEY" alone: Docker would copy the client's value
    auto key = env_key(entry);
    auto it = std::find_if(out.begin(), out.end(), [&](const std::string& e) { return env_key(e) == key; });
    if (it != out.end())
      *it = entry;
    else
      out.push_back(entry);
  };
  for (const auto& e : base) put(e);
  for (const auto& e : overrides) put(e);
  return out;
}

Result<ProcessSpec> process_spec(const std::string& image_name, const RunConfig& image, const Overrides& o) {
  ProcessSpec p;
  const std::vector<std::string>& entrypoint = o.entrypoint ? *o.entrypoint : image.entrypoint;
  // Docker: a new entrypoint drops the image's Cmd; arguments replace Cmd.
  const std::vector<std::string>& cmd = !o.cmd.empty() || o.entrypoint ? o.cmd : image.cmd;
  p.argv = entrypoint;
  p.argv.insert(p.argv.end(), cmd.begin(), cmd.end());
  if (p.argv.empty())
    return err("image {}: no command given and the image has no Entrypoint or Cmd (give one after --)", image_name);
  // Images normally set PATH; one that does not still gets the usual one.
  p.env = merge_env({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, image.env);
  p.env = merge_env(p.env, o.env);
  // Assigned from a reference, not a ternary temporary: GCC 12 warns about
  // a memcpy overlap (-Wrestrict) that cannot happen on the latter.
  const std::string& workdir = o.workdir ? *o.workdir : image.working_dir;
  p.workdir = workdir.empty() ? std::string("/") : workdir;
  if (p.workdir[0] != '/') return err("working directory '{}' is not an absolute path", p.workdir);
  p.user = o.user ? *o.user : image.user;
  if (p.user.size() > 255) return err("user '{}...': longer than 255 bytes", p.user.substr(0, 32));
  return p;
}

}  // namespace vicvmm::image
