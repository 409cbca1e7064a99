// `vicvmm serve` driven by the real docker CLI (Debian's docker.io client;
// no dockerd is involved: every command names our socket with -H), plus
// hostile raw HTTP over the Unix socket. Images are made with umoci and
// skopeo as in test_image_cli.cc; the store lives in a temp XDG_STATE_HOME.
#define CATCH_CONFIG_MAIN
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/serve/serve_process.h"
#include "tests/subprocess.h"

using namespace vicvmm::test;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
namespace fs = std::filesystem;

namespace {

// Sends `request` as is and returns everything the server answers until it
// closes the connection (the requests say Connection: close or are bad).
std::string raw_http(const std::string& sock, const std::string& request, bool half_close = false) {
  int fd = connect_unix(sock);
  if (fd < 0) return "";
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (half_close) shutdown(fd, SHUT_WR);
  std::string out = read_all(fd);
  close(fd);
  return out;
}

std::string ping(const std::string& sock) {
  return raw_http(sock, "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
}

}  // namespace

TEST_CASE("the docker CLI against vicvmm serve", "[serve][docker]") {
  // Debian's client first: /usr/local/bin may hold some other docker.
  std::string docker = access("/usr/bin/docker", X_OK) == 0 ? "/usr/bin/docker" : which("docker");
  std::string umoci = which("umoci"), skopeo = which("skopeo"), sh = which("sh"), tar = which("tar");
  if (docker.empty() || umoci.empty() || skopeo.empty() || sh.empty() || tar.empty()) {
    WARN("skipped: needs docker (docker.io), umoci, skopeo, tar (tools/setup installs them)");
    return;
  }
  ScratchDir s;
  fs::create_directories(s.path + "/docker-config");
  ServeProcess serve(s.path, {"--max-body", "64K", "--no-containers"});
  REQUIRE(serve.wait_ready());
  std::vector<std::string> env = {"DOCKER_CONFIG=" + s.path + "/docker-config", "DOCKER_HOST=", "DOCKER_CONTEXT=",
                                  "DOCKER_API_VERSION="};
  auto dock = [&](std::vector<std::string> args, const std::string& stdin_path = "/dev/null") {
    args.insert(args.begin(), {docker, "-H", "unix://" + serve.sock});
    Outcome o = run_process(args, env, stdin_path);
    UNSCOPED_INFO("docker " << args[3] << ": status " << o.status << "\nstdout: " << o.out << "\nstderr: " << o.err);
    return o;
  };
  auto run_ok = [&](const std::vector<std::string>& argv) {
    Outcome o = run_process(argv, env);
    INFO(argv[0] << " " << argv[1] << ": " << o.err);
    REQUIRE(o.status == 0);
  };

  // The socket: 0660, ours.
  struct stat st {};
  REQUIRE(lstat(serve.sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);

  Outcome o = dock({"version"});
  CHECK(o.status == 0);
  CHECK_THAT(o.out, Contains("Client:") && Contains("Server: vicvmm") && Contains("Engine:") &&
                        Contains("API version:      1.41 (minimum version 1.24)"));

  o = dock({"info", "--format", "{{json .}}"});
  REQUIRE(o.status == 0);
  auto info = nlohmann::json::parse(o.out, nullptr, false);
  REQUIRE(!info.is_discarded());
  CHECK(info["Images"] == 0);
  CHECK(info["Containers"] == 0);
  CHECK(info["Driver"] == "erofs");
  CHECK(info["NCPU"].get<long>() == sysconf(_SC_NPROCESSORS_ONLN));
  CHECK(info["MemTotal"].get<uint64_t>() > 0);
  o = dock({"info"});
  CHECK(o.status == 0);
  CHECK_THAT(o.out, Contains("Storage Driver: erofs") && Contains("Server Version:"));

  o = dock({"ps"});
  CHECK(o.status == 0);
  CHECK_THAT(o.out, StartsWith("CONTAINER ID"));
  CHECK(std::count(o.out.begin(), o.out.end(), '\n') == 1);

  o = dock({"volume", "ls"});
  CHECK(o.status == 1);
  CHECK_THAT(o.err, Contains("vicvmm does not implement GET /volumes"));

  o = dock({"pull", "alpine"});
  CHECK(o.status != 0);
  CHECK_THAT(o.err, Contains("vicvmm cannot pull alpine:latest"));

  // An image made by the tools people use: umoci, then skopeo to docker-archive.
  std::string layout = s.path + "/layout", bundle = s.path + "/bundle";
  run_ok({umoci, "init", "--layout", layout});
  run_ok({umoci, "new", "--image", layout + ":v1"});
  run_ok({umoci, "unpack", "--image", layout + ":v1", bundle});
  fs::create_directories(bundle + "/rootfs/etc");
  std::ofstream(bundle + "/rootfs/etc/greeting") << "hello\n";
  run_ok({umoci, "repack", "--image", layout + ":v1", bundle});
  run_ok({umoci, "config", "--image", layout + ":v1", "--config.cmd", "/bin/sh", "--config.workingdir", "/etc",
          "--config.env", "A=b"});
  std::string archive = s.path + "/demo.tar";
  run_ok({skopeo, "copy", "oci:" + layout + ":v1", "docker-archive:" + archive + ":demo:v1"});

  o = dock({"load", "-i", archive});
  REQUIRE(o.status == 0);
  CHECK(o.out == "Loaded image: demo:v1\n");

  o = dock({"images"});
  REQUIRE(o.status == 0);
  CHECK_THAT(o.out, StartsWith("REPOSITORY"));
  CHECK_THAT(o.out, Contains("demo") && Contains("v1"));
  o = dock({"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "demo"});
  CHECK(o.status == 0);
  CHECK_THAT(o.out, StartsWith("demo:v1 "));

  o = dock({"image", "inspect", "demo:v1"});
  REQUIRE(o.status == 0);
  auto j = nlohmann::json::parse(o.out, nullptr, false);
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 1);
  std::string id = j[0]["Id"].get<std::string>();
  CHECK_THAT(id, StartsWith("sha256:"));
  CHECK(id.size() == 71);
  CHECK(j[0]["RepoTags"] == nlohmann::json::array({"demo:v1"}));
  CHECK(j[0]["Config"]["Cmd"] == nlohmann::json::array({"/bin/sh"}));
  CHECK(j[0]["Config"]["WorkingDir"] == "/etc");
  CHECK(j[0]["Config"]["Env"] == nlohmann::json::array({"A=b"}));
  CHECK(j[0]["RootFS"]["Type"] == "layers");
  CHECK(j[0]["RootFS"]["Layers"].size() == 1);
  CHECK(j[0]["Os"] == "linux");

  o = dock({"tag", "demo:v1", "other:x"});
  CHECK(o.status == 0);
  CHECK_THAT(dock({"images"}).out, Contains("other"));
  o = dock({"history", "demo:v1"});
  CHECK(o.status == 0);

  // A template made from the image keeps it: 409, docker's conflict.
  fs::create_directories(s.path + "/state/vicvmm/templates/t1");
  std::ofstream(s.path + "/state/vicvmm/templates/t1/image") << id.substr(7) << "\n";
  o = dock({"rmi", "other:x"});  // a tag only: allowed
  CHECK(o.status == 0);
  CHECK(o.out == "Untagged: other:x\n");
  o = dock({"rmi", "demo:v1"});
  CHECK(o.status == 1);
  CHECK_THAT(o.err, Contains("conflict") && Contains("in use by template t1"));
  fs::remove_all(s.path + "/state/vicvmm/templates/t1");
  o = dock({"rmi", "demo:v1"});
  CHECK(o.status == 0);
  CHECK(o.out == "Untagged: demo:v1\nDeleted: " + id + "\n");
  o = dock({"rmi", "demo:v1"});
  CHECK(o.status == 1);
  CHECK_THAT(o.err, Contains("No such image: demo:v1"));
  o = dock({"image", "inspect", "nope"});
  CHECK(o.status == 1);
  CHECK_THAT(o.err, Contains("No such image: nope"));

  // docker import from a pipe (chunked request body).
  std::string rootfs = s.path + "/rootfs.tar";
  run_ok({tar, "-C", bundle + "/rootfs", "-cf", rootfs, "."});
  o = run_process({sh, "-c", "cat \"$0\" | \"$1\" -H \"$2\" import - imported:1", rootfs, docker, "unix://" + serve.sock},
                  env);
  INFO("import: " << o.out << o.err);
  CHECK(o.status == 0);
  CHECK_THAT(o.out, StartsWith("sha256:"));
  o = dock({"images", "--format", "{{.Repository}}:{{.Tag}}"});
  CHECK(o.out == "imported:1\n");
  o = dock({"info", "--format", "{{.Images}}"});
  CHECK(o.out == "1\n");

  // Bad input over raw HTTP; the server answers /_ping after each.
  std::string r = raw_http(serve.sock, "HEAD /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 200 OK\r\n"));
  CHECK_THAT(r, Contains("Api-Version: 1.41\r\n") && Contains("Ostype: linux\r\n") &&
                    Contains("Docker-Experimental: false\r\n") && Contains("Server: vicvmm/") &&
                    Contains("Content-Length: 2\r\n"));
  CHECK(r.find("\r\n\r\n") + 4 == r.size());  // no body on HEAD
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK\r\n") && Contains("\r\n\r\nOK"));

  r = raw_http(serve.sock, "POST /v1.41/images/imported:1/tag?repo=Bad%20Name&tag=%%% HTTP/1.1\r\nHost: d\r\n"
                           "Content-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{garbage!");
  CHECK_THAT(r, StartsWith("HTTP/1.1 400 "));
  CHECK_THAT(r, Contains("\"message\""));
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK"));

  r = raw_http(serve.sock, "GET /v1.x/_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 400 ") && Contains("invalid API version string"));
  r = raw_http(serve.sock, "GET /v1.99/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 400 ") && Contains("too new"));
  r = raw_http(serve.sock, "GET /v1.12/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 400 ") && Contains("too old"));
  r = raw_http(serve.sock, "DELETE /v1.41/networks/x HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 501 ") && Contains("vicvmm does not implement DELETE /networks/x"));

  // Over the 64K --max-body: refused from the headers, before the body.
  r = raw_http(serve.sock, "POST /v1.41/images/imported:1/tag HTTP/1.1\r\nHost: d\r\nContent-Length: 1000000\r\n\r\n"
                           "{\"a\":1}");
  CHECK_THAT(r, StartsWith("HTTP/1.1 413 "));
  // ... and a chunked body that grows past it.
  std::string chunked = "POST /v1.41/images/imported:1/tag HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 20; ++i) chunked += "1000\r\n" + std::string(4096, 'x') + "\r\n";
  r = raw_http(serve.sock, chunked);
  CHECK_THAT(r, StartsWith("HTTP/1.1 413 "));
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK"));

  // A client that goes away mid-body, to a JSON and to a spooled endpoint.
  raw_http(serve.sock, "POST /v1.41/images/imported:1/tag HTTP/1.1\r\nHost: d\r\nContent-Length: 1000\r\n\r\n{\"a\"", true);
  raw_http(serve.sock, "POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nContent-Length: 100000\r\n\r\npartial tar", true);
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK"));
  CHECK(fs::is_empty(s.path + "/state/vicvmm/images/tmp"));  // the spooled body is gone

  // Garbage.
  r = raw_http(serve.sock, "THIS IS NOT HTTP\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 400 "));
  r = raw_http(serve.sock, "GET / HTTP/1.1\r\nHost: d\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 431 "));
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK"));
  // A 30 KB path (the route matcher once recursed per character: found by
  // the http_request fuzz target, a stack overflow that took serve down).
  r = raw_http(serve.sock, "GET /v1.41/images/" + std::string(30000, 'a') + "/json HTTP/1.1\r\nHost: d\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 414 "));
  r = raw_http(serve.sock, "POST /v1.41/images/" + std::string(30000, 'a') + "/tag HTTP/1.1\r\nHost: d\r\n"
                           "Content-Length: 2\r\n\r\n{}");
  CHECK_THAT(r, StartsWith("HTTP/1.1 414 "));
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK"));

  // A client that sends half a request and then nothing blocks nobody.
  int slow = connect_unix(serve.sock);
  REQUIRE(slow >= 0);
  CHECK(send(slow, "GET /_ping HTTP/1.1\r\nHo", 23, MSG_NOSIGNAL) == 23);
  CHECK(dock({"ps"}).status == 0);
  CHECK_THAT(ping(serve.sock), StartsWith("HTTP/1.1 200 OK"));

  // Keep-alive: two requests on one connection.
  r = raw_http(serve.sock, "GET /_ping HTTP/1.1\r\nHost: d\r\n\r\nGET /v1.41/containers/json HTTP/1.1\r\nHost: d\r\n"
                           "Connection: close\r\n\r\n");
  CHECK_THAT(r, StartsWith("HTTP/1.1 200 OK") && Contains("OKHTTP/1.1 200 OK") && Contains("\r\n\r\n[]\n"));

  // SIGTERM: exit 0 with the slow connection still open, socket file removed.
  CHECK(serve.stop() == 0);
  close(slow);
  CHECK_FALSE(fs::exists(serve.sock));
  std::string log = slurp(serve.log);
  CHECK_THAT(log, Contains("GET /v1.41/containers/json 200 ") && Contains("POST /v1.41/images/load"));
}

TEST_CASE("vicvmm serve refuses what it cannot serve safely", "[serve]") {
  ScratchDir s;
  std::string vicvmm = vicvmm_bin();
  std::vector<std::string> env = {"XDG_STATE_HOME=" + s.path + "/state"};
  Outcome o = run_process({vicvmm, "serve", "--socket", s.path + "/a.sock", "--http", "0.0.0.0:2375"}, env);
  CHECK(o.status == 125);
  CHECK_THAT(o.err, Contains("0.0.0.0 is not a loopback address"));
  CHECK_FALSE(fs::exists(s.path + "/a.sock"));

  // A live server's socket is not taken over; a stale one is replaced.
  ServeProcess first(s.path, {"--no-containers"});
  REQUIRE(first.wait_ready());
  o = run_process({vicvmm, "serve", "--socket", first.sock}, env);
  CHECK(o.status == 125);
  CHECK_THAT(o.err, Contains("another server is listening"));
  CHECK_THAT(ping(first.sock), StartsWith("HTTP/1.1 200 OK"));
  kill(first.pid, SIGKILL);  // leaves a stale socket file behind
  waitpid(first.pid, nullptr, 0);
  first.pid = -1;
  REQUIRE(fs::exists(first.sock));
  ServeProcess second(s.path, {"--no-containers"});
  REQUIRE(second.wait_ready());
  CHECK_THAT(ping(second.sock), StartsWith("HTTP/1.1 200 OK"));
  CHECK(second.stop() == 0);

  std::ofstream(s.path + "/file") << "x";
  o = run_process({vicvmm, "serve", "--socket", s.path + "/file"}, env);
  CHECK(o.status == 125);
  CHECK_THAT(o.err, Contains("exists and is not a socket"));
}
