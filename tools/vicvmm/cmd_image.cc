// `vicvmm image load|import|ls|inspect|rm|tag`: the container image store
// (image/store.h) from the command line.
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "image/store.h"
#include "image/users.h"
#include "serve/containers.h"
#include "tools/vicvmm/commands.h"
#include "tools/vicvmm/options.h"

namespace vicvmm::cli {

namespace {

int fail(const std::string& msg) {
  fmt::print(stderr, "vicvmm: error: {}\n", msg);
  return kExitVmmError;
}

// --max-size, else $VICVMM_IMAGE_MAX_SIZE, else the library's default.
Result<image::Limits> limits_from(const std::string& max_size) {
  image::Limits limits;
  std::string text = max_size, source = "--max-size";
  if (text.empty()) {
    const char* env = std::getenv("VICVMM_IMAGE_MAX_SIZE");
    if (!env || !*env) return limits;
    text = env;
    source = "VICVMM_IMAGE_MAX_SIZE";
  }
  auto size = parse_size(text);
  if (!size) return err("{}: {}", source, size.error().message);
  if (*size == 0) return err("{}: must be more than 0", source);
  limits.max_unpacked_bytes = *size;
  return limits;
}

Result<image::Store> open_store(const std::string& max_size = {}) {
  VIC_ASSIGN(image::Limits limits, limits_from(max_size));
  return image::Store::open(image::Store::default_root(), limits);
}

std::map<std::string, std::string> template_images() { return image::template_images(templates_dir()); }

// Templates made from the image and serve's containers made from it.
std::vector<std::string> users_of(const std::string& id, const std::map<std::string, std::string>& templates) {
  std::vector<std::string> users;
  for (const auto& c : serve::containers_using(serve::ContainerManager::read_records(state_dir() + "/containers"), id))
    users.push_back("container " + c);
  for (const auto& t : image::templates_using(id, templates)) users.push_back("template " + t);
  return users;
}

std::string human_size(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{}B", bytes) : fmt::format("{:.3g}{}", v, units[u]);
}

// "2024-01-02T03:04:05.123Z" -> "3 days ago"; "-" when absent or unparsable.
std::string human_age(const std::string& created) {
  struct tm tm {};
  if (created.empty() || !strptime(created.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return "-";
  time_t then = timegm(&tm);
  long long secs = static_cast<long long>(time(nullptr) - then);
  if (secs < 0) return "in the future";
  auto ago = [](long long n, const char* unit) { return fmt::format("{} {}{} ago", n, unit, n == 1 ? "" : "s"); };
  if (secs < 60) return ago(secs, "second");
  if (secs < 3600) return ago(secs / 60, "minute");
  if (secs < 86400) return ago(secs / 3600, "hour");
  if (secs < 14 * 86400) return ago(secs / 86400, "day");
  if (secs < 60 * 86400) return ago(secs / (7 * 86400), "week");
  if (secs < 365 * 86400) return ago(secs / (30 * 86400), "month");
  return ago(secs / (365 * 86400), "year");
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i)
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}   ", row[i], width[i]);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    fmt::print("{}\n", line);
  }
}

}  // namespace

int cmd_image_load(const std::string& path, const std::string& max_size) {
  auto store = open_store(max_size);
  if (!store) return fail(store.error().message);
  auto images = store->load(path);
  if (!images) return fail(images.error().message);
  for (const auto& img : *images) {
    if (img.tags.empty()) fmt::print("Loaded image ID: sha256:{}\n", img.id);
    for (const auto& t : img.tags) fmt::print("Loaded image: {}\n", t);
  }
  return 0;
}

int cmd_image_import(const std::string& path, const std::string& name, const std::string& max_size) {
  auto store = open_store(max_size);
  if (!store) return fail(store.error().message);
  auto img = store->import_rootfs(path, name);
  if (!img) return fail(img.error().message);
  fmt::print("sha256:{}\n", img->id);
  return 0;
}

int cmd_image_ls() {
  auto store = open_store();
  if (!store) return fail(store.error().message);
  auto images = store->list();
  if (!images) return fail(images.error().message);
  auto templates = template_images();
  std::vector<std::vector<std::string>> rows = {{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "DISK", "USED BY"}};
  for (const auto& img : *images) {
    std::string used;
    for (const auto& u : users_of(img.id, templates)) used += (used.empty() ? "" : ",") + u;
    std::vector<std::string> tail = {img.id.substr(0, 12), human_age(img.created), human_size(img.size),
                                     img.erofs_size ? human_size(img.erofs_size) : "-", used.empty() ? "-" : used};
    std::vector<std::string> tags = img.tags.empty() ? std::vector<std::string>{"<none>:<none>"} : img.tags;
    for (const auto& t : tags) {
      size_t colon = t.rfind(':');
      std::vector<std::string> row = {t.substr(0, colon), t.substr(colon + 1)};
      row.insert(row.end(), tail.begin(), tail.end());
      rows.push_back(std::move(row));
    }
  }
  print_table(rows);
  return 0;
}

int cmd_image_inspect(const std::string& ref) {
  using json = nlohmann::json;
  auto store = open_store();
  if (!store) return fail(store.error().message);
  auto img = store->resolve(ref);
  if (!img) return fail(img.error().message);
  json layers = json::array();
  for (const auto& l : img->layers)
    layers.push_back({{"digest", l.digest}, {"diff_id", l.diff_id}, {"media_type", l.media_type}, {"size", l.size}});
  json erofs = nullptr;
  if (img->erofs_size) erofs = {{"path", store->root() + "/erofs/" + img->id + ".erofs"}, {"size", img->erofs_size}};
  json j = {{"id", "sha256:" + img->id},
            {"tags", img->tags},
            {"created", img->created},
            {"architecture", img->architecture},
            {"os", img->os},
            {"config",
             {{"Entrypoint", img->config.entrypoint},
              {"Cmd", img->config.cmd},
              {"Env", img->config.env},
              {"WorkingDir", img->config.working_dir},
              {"User", img->config.user},
              {"ExposedPorts", img->config.exposed_ports}}},
            {"layers", layers},
            {"size", img->size},
            {"erofs", erofs},
            {"used_by", users_of(img->id, template_images())}};
  fmt::print("{}\n", j.dump(2, ' ', false, json::error_handler_t::replace));
  return 0;
}

int cmd_image_rm(const std::string& ref) {
  auto store = open_store();
  if (!store) return fail(store.error().message);
  auto before = store->resolve(ref);
  if (!before) return fail(before.error().message);
  auto templates = template_images();
  auto r = store->remove(ref, [&](const image::Image& img) -> std::optional<std::string> {
    auto users = users_of(img.id, templates);
    if (users.empty()) return std::nullopt;
    return users.front();
  });
  if (!r) return fail(r.error().message);
  if (auto after = store->resolve("sha256:" + before->id); after) {
    for (const auto& t : before->tags)
      if (std::find(after->tags.begin(), after->tags.end(), t) == after->tags.end()) fmt::print("Untagged: {}\n", t);
  } else {
    for (const auto& t : before->tags) fmt::print("Untagged: {}\n", t);
    fmt::print("Deleted: sha256:{}\n", before->id);
  }
  return 0;
}

int cmd_image_disk(const std::string& ref) {
  auto store = open_store();
  if (!store) return fail(store.error().message);
  auto img = store->resolve(ref);
  if (!img) return fail(img.error().message);
  auto disk = store->erofs_disk(*img);
  if (!disk) return fail(disk.error().message);
  fmt::print("{}\n", *disk);
  return 0;
}

int cmd_image_tag(const std::string& ref, const std::string& name) {
  auto store = open_store();
  if (!store) return fail(store.error().message);
  if (auto r = store->tag(ref, name); !r) return fail(r.error().message);
  return 0;
}

}  // namespace vicvmm::cli
