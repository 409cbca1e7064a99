// /images: the image store (image/store.h) in docker's shapes. Store calls
// block (disk, flock), so they run on the server's pool.
#include <fnmatch.h>

#include <algorithm>
#include <ctime>

#include "image/users.h"
#include "serve/containers.h"
#include "serve/routes.h"

namespace vicvmm::serve {

namespace {

using nlohmann::json;

// RFC 3339 -> unix seconds (0 when absent or unparsable).
int64_t unix_seconds(const std::string& created) {
  struct tm tm{};
  if (created.empty() || !strptime(created.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

// Docker names an unknown image as the daemon normalized it: "foo:latest".
std::string docker_ref(const std::string& ref) {
  bool hexish = ref.size() >= 4 && ref.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hexish || ref.starts_with("sha256:")) return ref;
  size_t slash = ref.rfind('/');
  bool has_tag = ref.find(':', slash == std::string::npos ? 0 : slash) != std::string::npos;
  return has_tag || ref.find('@') != std::string::npos ? ref : ref + ":latest";
}

bool is_not_found(const Error& e) { return e.message.find("no such image") != std::string::npos; }

Response store_error(const Error& e, const std::string& ref, unsigned otherwise) {
  if (is_not_found(e)) return error_response(404, "No such image: " + docker_ref(ref));
  return error_response(otherwise, e.message);
}

json or_null(const std::vector<std::string>& v) { return v.empty() ? json(nullptr) : json(v); }

json summary(const image::Image& img) {
  return {{"Id", "sha256:" + img.id},
          {"ParentId", ""},
          {"RepoTags", img.tags},
          {"RepoDigests", json::array()},
          {"Created", unix_seconds(img.created)},
          {"Size", img.size},
          {"SharedSize", -1},
          {"VirtualSize", img.size},
          {"Labels", json::object()},
          {"Containers", -1}};
}

json inspect(const image::Image& img, const std::string& store_root) {
  json ports = nullptr;
  if (!img.config.exposed_ports.empty()) {
    ports = json::object();
    for (const auto& p : img.config.exposed_ports) ports[p] = json::object();
  }
  json diff_ids = json::array();
  for (const auto& l : img.layers) diff_ids.push_back(l.diff_id);
  json driver_data = json::object();
  if (img.erofs_size) driver_data["Disk"] = store_root + "/erofs/" + img.id + ".erofs";
  return {{"Id", "sha256:" + img.id},
          {"RepoTags", img.tags},
          {"RepoDigests", json::array()},
          {"Parent", ""},
          {"Comment", ""},
          {"Created", img.created.empty() ? "0001-01-01T00:00:00Z" : img.created},
          {"Container", ""},
          {"DockerVersion", ""},
          {"Author", ""},
          {"Config",
           {{"Hostname", ""},
            {"Domainname", ""},
            {"User", img.config.user},
            {"ExposedPorts", ports},
            {"Env", or_null(img.config.env)},
            {"Cmd", or_null(img.config.cmd)},
            {"Entrypoint", or_null(img.config.entrypoint)},
            {"WorkingDir", img.config.working_dir},
            {"Image", ""},
            {"Volumes", nullptr},
            {"OnBuild", nullptr},
            {"Labels", nullptr}}},
          {"Architecture", img.architecture},
          {"Os", img.os},
          {"Size", img.size},
          {"VirtualSize", img.size},
          {"GraphDriver", {{"Name", "erofs"}, {"Data", driver_data}}},
          {"RootFS", {{"Type", "layers"}, {"Layers", diff_ids}}},
          {"Metadata", {{"LastTagTime", "0001-01-01T00:00:00Z"}}}};
}

// `docker images NAME` sends filters={"reference":{"NAME":true}}: match it
// against "repo" and "repo:tag" the way docker does (shell patterns).
bool matches_reference(const image::Image& img, const std::vector<std::string>& patterns) {
  if (patterns.empty()) return true;
  for (const auto& tag : img.tags) {
    std::string repo = tag.substr(0, tag.rfind(':'));
    for (const auto& p : patterns)
      if (fnmatch(p.c_str(), tag.c_str(), 0) == 0 || fnmatch(p.c_str(), repo.c_str(), 0) == 0) return true;
  }
  return false;
}

Result<std::vector<std::string>> reference_filters(const Request& req) {
  std::vector<std::string> out;
  auto it = req.query.find("filters");
  if (it == req.query.end() || it->second.empty()) return out;
  json f = json::parse(it->second, nullptr, false);
  if (f.is_discarded() || !f.is_object()) return err("invalid filters: {}", it->second);
  for (const auto& [key, value] : f.items()) {
    if (key == "dangling") continue;  // images always have content here; tags are optional
    if (key != "reference") return err("invalid filter '{}'", key);
    // {"reference":{"x":true}} (current) or {"reference":["x"]} (old clients)
    if (value.is_object())
      for (const auto& [k, v] : value.items()) out.push_back(k);
    else if (value.is_array())
      for (const auto& v : value)
        if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// An error about the spooled body should name the request, not our temp file.
std::string without_path(std::string message, const std::string& path) {
  for (size_t at; (at = message.find(path)) != std::string::npos;) message.replace(at, path.size(), "(request body)");
  return message;
}

}  // namespace

void add_image_routes(Router& r, const Context& ctx) {
  image::Store* store = ctx.store;

  r.add(http::verb::get, "/images/json", [store](Request& req, Connection& conn) -> asio::awaitable<Response> {
    auto patterns = reference_filters(req);
    if (!patterns) co_return error_response(400, patterns.error().message);
    auto job = [store] { return store->list(); };
    auto images = co_await conn.blocking(job);
    if (!images) co_return error_response(500, images.error().message);
    json out = json::array();
    for (const auto& img : *images)
      if (matches_reference(img, *patterns)) out.push_back(summary(img));
    co_return json_response(out);
  });

  r.add(http::verb::get, "/images/{name}/json", [store](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["name"];
    auto job = [store, ref] { return store->resolve(ref); };
    auto img = co_await conn.blocking(job);
    if (!img) co_return store_error(img.error(), ref, 500);
    co_return json_response(inspect(*img, store->root()));
  });

  r.add(http::verb::get, "/images/{name}/history", [store](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["name"];
    auto job = [store, ref] { return store->resolve(ref); };
    auto img = co_await conn.blocking(job);
    if (!img) co_return store_error(img.error(), ref, 500);
    // The store keeps layers, not the config's history: one entry per layer, newest first.
    json out = json::array();
    int64_t created = unix_seconds(img->created);
    for (size_t i = img->layers.size(); i-- > 0;) {
      bool top = i + 1 == img->layers.size();
      out.push_back({{"Id", top ? "sha256:" + img->id : "<missing>"},
                     {"Created", created},
                     {"CreatedBy", ""},
                     {"Tags", top ? json(img->tags) : json(nullptr)},
                     {"Size", img->layers[i].size},
                     {"Comment", img->layers[i].diff_id}});
    }
    co_return json_response(out);
  });

  // docker load: the body is a docker-archive or an OCI layout tar, spooled to
  // the store's tmp/; the answer is a JSON message stream the CLI prints.
  r.add(
      http::verb::post, "/images/load",
      [store](Request& req, Connection& conn) -> asio::awaitable<Response> {
        std::string path = req.body_file;
        auto job = [store, path] { return store->load(path); };
        auto images = co_await conn.blocking(job);
        if (!images) co_return error_response(400, without_path(images.error().message, path));
        // Streamed (chunked) like docker's own answer, message by message.
        if (!co_await conn.begin_stream(200, "application/json")) co_return Response{};
        for (const auto& img : *images) {
          std::vector<std::string> lines;
          if (img.tags.empty()) lines.push_back("Loaded image ID: sha256:" + img.id + "\n");
          for (const auto& t : img.tags) lines.push_back("Loaded image: " + t + "\n");
          for (const auto& line : lines) {
            std::string message = json{{"stream", line}}.dump() + "\r\n";
            if (!co_await conn.write(message)) co_return Response{};
          }
        }
        co_return Response{};  // the server ends the stream
      },
      BodyMode::kSpool);

  // docker import (fromSrc=-: the body is a root filesystem tar) and docker
  // pull (fromImage: impossible without a registry).
  r.add(
      http::verb::post, "/images/create",
      [store](Request& req, Connection& conn) -> asio::awaitable<Response> {
        if (req.query.count("fromImage")) {
          std::string what = req.query["fromImage"];
          if (!req.query["tag"].empty()) what += ":" + req.query["tag"];
          co_return error_response(
              501, fmt::format("vicvmm cannot pull {}: it has no registry access; load the image with `docker load` "
                               "(from `docker save` elsewhere) or `docker import`",
                               what));
        }
        std::string src = req.query["fromSrc"];
        if (src != "-")
          co_return error_response(400, src.empty() ? "fromImage or fromSrc is required"
                                                    : "vicvmm imports only from the request body (fromSrc=-), not " + src);
        if (!req.query["changes"].empty() && req.query["changes"] != "[]")
          co_return error_response(400, "vicvmm does not support import --change yet");
        std::string name = req.query["repo"];
        if (name.empty()) co_return error_response(400, "vicvmm needs a name to import: docker import - NAME[:TAG]");
        if (!req.query["tag"].empty()) name += ":" + req.query["tag"];
        std::string path = req.body_file;
        auto job = [store, path, name] { return store->import_rootfs(path, name); };
        auto img = co_await conn.blocking(job);
        if (!img) co_return error_response(400, without_path(img.error().message, path));
        co_return json_response(json{{"status", "sha256:" + img->id}});
      },
      BodyMode::kSpool);

  r.add(http::verb::post, "/images/{name}/tag", [store](Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["name"], repo = req.query["repo"], tag = req.query["tag"];
    if (repo.empty()) co_return error_response(400, "repository name (repo) is required");
    std::string name = tag.empty() ? repo : repo + ":" + tag;
    auto job = [store, ref, name]() -> Result<void> {
      VIC_TRY(store->resolve(ref));
      return store->tag(ref, name);
    };
    auto tagged = co_await conn.blocking(job);
    if (!tagged) co_return store_error(tagged.error(), ref, 400);
    Response res;
    res.status = 201;
    res.content_type.clear();
    co_return res;
  });

  r.add(http::verb::delete_, "/images/{name}", [store, dir = ctx.templates_dir, containers = ctx.containers](
                                                   Request& req, Connection& conn) -> asio::awaitable<Response> {
    std::string ref = req.params["name"];
    struct Outcome {
      json deleted = json::array();
      bool in_use = false;
    };
    auto job = [store, ref, dir, containers]() -> Result<Outcome> {
      Outcome o;
      VIC_ASSIGN(image::Image before, store->resolve(ref));
      auto templates = image::template_images(dir);
      auto removed = store->remove(ref, [&](const image::Image& img) -> std::optional<std::string> {
        auto users = image::templates_using(img.id, templates);
        auto in_containers = containers ? containers_using(containers->list(), img.id) : std::vector<std::string>{};
        if (users.empty() && in_containers.empty()) return std::nullopt;
        o.in_use = true;
        return in_containers.empty() ? "template " + users.front() : "container " + in_containers.front();
      });
      if (!removed) {
        if (!o.in_use) return tl::unexpected(removed.error());
        o.deleted = removed.error().message;  // the conflict, reported below
        return o;
      }
      auto after = store->resolve("sha256:" + before.id);
      for (const auto& t : before.tags)
        if (!after || std::find(after->tags.begin(), after->tags.end(), t) == after->tags.end())
          o.deleted.push_back({{"Untagged", t}});
      if (!after) o.deleted.push_back({{"Deleted", "sha256:" + before.id}});
      return o;
    };
    auto outcome = co_await conn.blocking(job);
    if (!outcome) co_return store_error(outcome.error(), ref, 500);
    if (outcome->in_use)
      co_return error_response(
          409, fmt::format("conflict: unable to remove {}: {}", ref, outcome->deleted.get<std::string>()));
    co_return json_response(outcome->deleted);
  });
}

}  // namespace vicvmm::serve
