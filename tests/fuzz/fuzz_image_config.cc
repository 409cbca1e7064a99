// libFuzzer target: the image store's parsers of untrusted JSON text
// (image/records.h) and what is derived from them. Every input goes to:
//   - parse_image_config(): an image config from a docker-archive or OCI
//     layout (as image load and import read it), then process_spec()
//     (image/container_spec.h) on its run config;
//   - record_from_json(): a store record (images/<id>.json; the store's
//     own file, but read back from disk);
//   - normalize_tag(): an image reference (RepoTags, OCI ref.name
//     annotations, the API's names), when the input is short enough.
//
// Checked: lists within kMaxListEntries and diff_ids valid digests; a parsed
// config stored as a record (record_to_json) reads back the same; a parsed
// record re-serialises to itself; process_spec fails exactly when Docker's
// rules say so (no command, a relative working directory, a long user) and
// otherwise gives an absolute workdir and unique KEY=value env entries; a
// normalized tag is name:tag within the length limits and normalizes to
// itself.
// Run: tools/fuzz image_config [SECONDS]
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "image/container_spec.h"
#include "image/digest.h"
#include "image/records.h"
#include "tests/fuzz/fuzz_check.h"

using namespace vicvmm;
using namespace vicvmm::image;

namespace {

const std::string kId(64, 'a');  // any valid id: the records' own field

bool same_config(const RunConfig& a, const RunConfig& b) {
  return a.entrypoint == b.entrypoint && a.cmd == b.cmd && a.env == b.env && a.working_dir == b.working_dir &&
         a.user == b.user && a.exposed_ports == b.exposed_ports;
}

bool same_record(const ImageRecord& a, const ImageRecord& b) {
  if (a.image.layers.size() != b.image.layers.size()) return false;
  for (size_t i = 0; i < a.image.layers.size(); ++i) {
    const Layer &x = a.image.layers[i], &y = b.image.layers[i];
    if (x.digest != y.digest || x.diff_id != y.diff_id || x.media_type != y.media_type || x.size != y.size)
      return false;
  }
  return a.image.id == b.image.id && a.image.created == b.image.created &&
         a.image.architecture == b.image.architecture && a.image.os == b.image.os &&
         same_config(a.image.config, b.image.config) && a.image.size == b.image.size &&
         a.config_digest == b.config_digest && a.manifest_digest == b.manifest_digest;
}

void check_lists(const RunConfig& c) {
  FUZZ_CHECK(c.entrypoint.size() <= kMaxListEntries && c.cmd.size() <= kMaxListEntries);
  FUZZ_CHECK(c.env.size() <= kMaxListEntries && c.exposed_ports.size() <= kMaxListEntries);
}

void check_process_spec(const RunConfig& c) {
  auto p = process_spec("fuzz", c, {});
  const bool no_command = c.entrypoint.empty() && c.cmd.empty();
  const bool relative = !c.working_dir.empty() && c.working_dir[0] != '/';
  const bool long_user = c.user.size() > 255;
  FUZZ_CHECK(p.has_value() == !(no_command || relative || long_user));
  if (!p) return;
  FUZZ_CHECK(p->argv.size() == c.entrypoint.size() + c.cmd.size());
  FUZZ_CHECK(!p->workdir.empty() && p->workdir[0] == '/');
  FUZZ_CHECK(p->user == c.user);
  std::set<std::string> keys;
  for (const auto& e : p->env) {
    size_t eq = e.find('=');
    FUZZ_CHECK(eq != std::string::npos);
    FUZZ_CHECK(keys.insert(e.substr(0, eq)).second);
  }
  FUZZ_CHECK(keys.count("PATH"));
}

void fuzz_config(std::string_view text) {
  std::vector<std::string> diff_ids;
  auto img = parse_image_config(text, diff_ids);
  if (!img) return;
  check_lists(img->config);
  FUZZ_CHECK(diff_ids.size() <= kMaxListEntries);
  for (const auto& d : diff_ids) FUZZ_CHECK(valid_digest(d));
  check_process_spec(img->config);

  // Stored as the loaders store it, it reads back the same.
  ImageRecord r;
  r.image = *img;
  r.image.id = kId;
  r.config_digest = "sha256:" + kId;
  r.manifest_digest = "sha256:" + std::string(64, 'b');
  for (const auto& d : diff_ids) {
    r.image.layers.push_back({d, d, "application/vnd.oci.image.layer.v1.tar", 1});
    r.image.size += 1;
  }
  auto back = record_from_json(record_to_json(r), "fuzz");
  FUZZ_CHECK(back.has_value());
  FUZZ_CHECK(same_record(r, *back));
}

void fuzz_record(std::string_view text) {
  auto r = record_from_json(text, "fuzz");
  if (!r) return;
  FUZZ_CHECK(valid_digest(r->config_digest) && r->config_digest == "sha256:" + r->image.id);
  for (const auto& l : r->image.layers) FUZZ_CHECK(valid_digest(l.digest));
  check_lists(r->image.config);
  auto back = record_from_json(record_to_json(*r), "fuzz");
  FUZZ_CHECK(back.has_value());
  FUZZ_CHECK(same_record(*r, *back));
}

void fuzz_tag(std::string_view text) {
  auto t = normalize_tag(std::string(text));
  if (!t) return;
  size_t colon = t->rfind(':');
  FUZZ_CHECK(colon != std::string::npos);
  FUZZ_CHECK(colon >= 1 && colon <= 255 && t->size() - colon - 1 >= 1 && t->size() - colon - 1 <= 128);
  auto again = normalize_tag(*t);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(*again == *t);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz_config(text);
  fuzz_record(text);
  if (size <= 512) fuzz_tag(text);
  return 0;
}
