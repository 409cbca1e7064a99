// The stock docker CLI (Debian's docker.io, client only) against `vicvmm
// serve`: every container a VM cloned from the base template with its
// image attached. The images are real: a busybox root filesystem imported
// with `docker import`, and Debian bookworm from mmdebstrap.
//
// Shares the image tests' state directory (the base template and the
// Debian image are made once).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/linux/http_helpers.h"
#include "tests/serve/serve_process.h"
#include "tests/subprocess.h"

using namespace vicvmm::test;
namespace fs = std::filesystem;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string shared_state() {
  return env_or("XDG_CACHE_HOME", env_or("HOME", "/root") + "/.cache") + "/vicvmm/test-state";
}

struct Docker {
  std::string bin, sock;
  std::vector<std::string> env;
  Outcome operator()(std::vector<std::string> args, const std::string& stdin_path = "/dev/null") const {
    args.insert(args.begin(), {bin, "-H", "unix://" + sock});
    return run_process(args, env, stdin_path);
  }
};

// A busybox root filesystem as a tar: busybox-static and its applet links.
std::string busybox_rootfs_tar(const std::string& dir) {
  std::string root = dir + "/bb-root";
  fs::create_directories(root + "/bin");
  fs::create_directories(root + "/etc");
  fs::copy_file("/bin/busybox", root + "/bin/busybox");
  for (const char* applet : {"sh", "echo", "cat", "httpd", "mkdir", "sleep", "true", "ls", "id", "hostname", "wc", "tty", "stty"})
    fs::create_symlink("busybox", root + "/bin/" + applet);
  std::ofstream(root + "/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
  std::ofstream(root + "/etc/group") << "root:x:0:\nnogroup:x:65534:\n";
  std::string tar = dir + "/busybox.tar";
  Outcome t = run_process({"/usr/bin/tar", "-C", root, "-cf", tar, "."});
  return t.status == 0 ? tar : "";
}

}  // namespace

TEST_CASE("docker CLI: containers are VMs (run, -i, -d -p, ps, logs, stats, stop, rm, errors, restart of serve)",
          "[linux][serve][docker]") {
  std::string docker = access("/usr/bin/docker", X_OK) == 0 ? "/usr/bin/docker" : which("docker");
  REQUIRE_FALSE(docker.empty());  // tools/setup installs docker.io (the client is all we use)
  REQUIRE(access("/bin/busybox", X_OK) == 0);
  ScratchDir s;
  fs::create_directories(s.path + "/docker-config");
  const uint16_t http_port = free_port();  // the web page, for the browser
  const std::vector<std::string> serve_args = {"--http", "127.0.0.1:" + std::to_string(http_port)};
  auto serve = std::make_unique<ServeProcess>(s.path, serve_args, shared_state());
  INFO(s.path + "/serve.log");
  REQUIRE(serve->wait_ready(6000));  // a first run boots the base template (~10-60 s)
  Docker dock{docker, serve->sock,
              {"DOCKER_CONFIG=" + s.path + "/docker-config", "DOCKER_HOST=", "DOCKER_CONTEXT=", "DOCKER_API_VERSION="}};

  // The state is shared across runs: an interrupted run may have left these.
  dock({"rm", "-f", "web", "exit3"});

  std::string tar = busybox_rootfs_tar(s.path);
  REQUIRE_FALSE(tar.empty());
  Outcome imp = dock({"import", "-", "bb-test:1"}, tar);
  CAPTURE(imp.out, imp.err);
  REQUIRE(imp.status == 0);

  Outcome hi = dock({"run", "--rm", "bb-test:1", "echo", "hi"});
  CAPTURE(hi.out, hi.err);
  CHECK(hi.status == 0);
  CHECK(hi.out == "hi\n");

  Outcome three = dock({"run", "--name", "exit3", "bb-test:1", "sh", "-c", "echo out; echo err >&2; exit 3"});
  CAPTURE(three.out, three.err);
  CHECK(three.status == 3);
  CHECK(three.out == "out\n");
  CHECK(three.err == "err\n");
  Outcome logs3 = dock({"logs", "exit3"});
  CHECK(logs3.out == "out\n");
  CHECK(logs3.err == "err\n");
  Outcome ps_a = dock({"ps", "-a", "--format", "{{.Names}} {{.Status}}"});
  CHECK(ps_a.out.find("exit3 Exited (3)") != std::string::npos);

  // Piped stdin reaches the container; its EOF too (--rm: the status survives the removal).
  std::string script = s.path + "/script.sh";
  std::ofstream(script) << "echo hi; exit 7\n";
  Outcome in = dock({"run", "-i", "--rm", "bb-test:1", "sh"}, script);
  CAPTURE(in.out, in.err);
  CHECK(in.status == 7);
  CHECK(in.out == "hi\n");
  std::string data = s.path + "/data.txt";
  std::ofstream(data) << "one\ntwo\nthree\n";
  Outcome wc = dock({"run", "-i", "--rm", "bb-test:1", "wc", "-l"}, data);
  CAPTURE(wc.out, wc.err);
  CHECK(wc.out.find("3") != std::string::npos);

  // -e, -w, -u, --hostname and --entrypoint reach the process.
  Outcome opts = dock({"run", "--rm", "-e", "FOO=bar", "-w", "/srv/x", "-u", "65534", "--hostname", "box",
                       "--entrypoint", "/bin/sh", "bb-test:1", "-c", "echo $FOO $(pwd) $(id -u) $(hostname)"});
  CAPTURE(opts.out, opts.err);
  CHECK(opts.out == "bar /srv/x 65534 box\n");

  // A web server in a detached container, reached through its published port.
  const uint16_t port = free_port();
  Outcome web = dock({"run", "-d", "--name", "web", "-p", std::to_string(port) + ":80", "bb-test:1", "sh", "-c",
                      "mkdir /www && echo hello-from-a-vm > /www/index.html && echo serving && httpd -f -p 80 -h /www"});
  CAPTURE(web.out, web.err);
  REQUIRE(web.status == 0);
  CHECK(web.out.size() == 65);  // the id and a newline
  std::string body = http_get_retry(port, std::chrono::seconds(60));
  CHECK(body.find("hello-from-a-vm") != std::string::npos);
  Outcome ps = dock({"ps", "--format", "{{.Names}} {{.Ports}} {{.Status}}"});
  CAPTURE(ps.out);
  CHECK(ps.out.find("web 127.0.0.1:" + std::to_string(port) + "->80/tcp Up") != std::string::npos);
  // docker ps --filter, as the CLI sends it: exit3 (exited 3) and web (running).
  auto names = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"ps", "--format", "{{.Names}}"});
    Outcome o = dock(args);
    CAPTURE(o.err);
    return o.status == 0 ? o.out : "status " + std::to_string(o.status);
  };
  CHECK(names({"--filter", "name=^web$"}) == "web\n");
  CHECK(names({"-a", "--filter", "name=exit3"}) == "exit3\n");
  CHECK(names({"--filter", "status=exited", "--filter", "name=exit"}) == "exit3\n");  // status implies -a
  CHECK(names({"-a", "--filter", "exited=3"}) == "exit3\n");
  CHECK(names({"--filter", "publish=80"}) == "web\n");
  CHECK(names({"--filter", "ancestor=bb-test:1", "--filter", "name=web"}) == "web\n");
  CHECK(names({"-a", "--filter", "since=exit3", "--filter", "name=^(web|exit3)$"}) == "web\n");
  Outcome bad = dock({"ps", "--filter", "status=sleeping"});
  CHECK(bad.status != 0);
  CHECK_THAT(bad.err, Catch::Contains("invalid filter 'status=sleeping'"));
  Outcome logs = dock({"logs", "web"});
  CHECK(logs.out == "serving\n");
  Outcome stats = dock({"stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "web"});
  CAPTURE(stats.out, stats.err);
  CHECK(stats.out.rfind("web ", 0) == 0);
  CHECK(stats.out.find("MiB") != std::string::npos);

  // docker exec: more processes in the running container's VM, through its agent.
  Outcome ex = dock({"exec", "web", "cat", "/www/index.html"});
  CAPTURE(ex.out, ex.err);
  CHECK(ex.status == 0);
  CHECK(ex.out == "hello-from-a-vm\n");
  Outcome ex5 = dock({"exec", "web", "sh", "-c", "echo to-out; echo to-err >&2; exit 5"});
  CAPTURE(ex5.out, ex5.err);
  CHECK(ex5.status == 5);
  CHECK(ex5.out == "to-out\n");
  CHECK(ex5.err == "to-err\n");
  Outcome exi = dock({"exec", "-i", "web", "wc", "-l"}, data);
  CAPTURE(exi.out, exi.err);
  CHECK(exi.status == 0);
  CHECK(exi.out.find("3") != std::string::npos);
  Outcome exo = dock({"exec", "-e", "X=1", "-w", "/www", "-u", "65534", "web", "sh", "-c", "echo $X $(pwd) $(id -u)"});
  CAPTURE(exo.out, exo.err);
  CHECK(exo.out == "1 /www 65534\n");
  Outcome ext = dock({"exec", "-t", "web", "sh", "-c", "tty; echo $((1+1))"});
  CAPTURE(ext.out, ext.err);
  CHECK(ext.status == 0);
  CHECK(ext.out.find("/dev/pts/") != std::string::npos);
  CHECK(ext.out.find("2\r\n") != std::string::npos);  // a terminal's line ending: the output is raw
  // -it: the docker CLI on a terminal (script(1) gives it one, 40x100), keys
  // typed into it reach the exec's terminal, and its size follows.
  std::string typed = s.path + "/typed.sh";
  std::ofstream(typed) << "#!/bin/sh\nsleep 3; printf 'hello\\n'; sleep 3\n";
  fs::permissions(typed, fs::perms::owner_all);
  auto on_terminal = [&](const std::string& docker_args) {
    std::string cmd = typed + " | script -qec \"stty rows 40 cols 100; " + dock.bin + " -H unix://" + dock.sock + " " +
                      docker_args + "\" /dev/null";
    return run_process({"/bin/sh", "-c", cmd}, dock.env);
  };
  Outcome exit_tty = on_terminal("exec -it web sh -c 'read x; echo got-\\$x; stty size'");
  CAPTURE(exit_tty.out, exit_tty.err);
  CHECK(exit_tty.out.find("got-hello\r\n40 100\r\n") != std::string::npos);
  Outcome run_tty = on_terminal("run -it --rm bb-test:1 sh -c 'read x; echo got-\\$x; stty size; tty'");
  CAPTURE(run_tty.out, run_tty.err);
  CHECK(run_tty.out.find("got-hello\r\n40 100\r\n/dev/pts/0\r\n") != std::string::npos);
  Outcome exd = dock({"exec", "-d", "web", "sh", "-c", "echo detached > /www/d.html"});
  CHECK(exd.status == 0);
  std::string detached_out;  // it runs on after `exec -d` returns: poll for its file
  for (int i = 0; i < 50 && detached_out.empty(); i++) {
    detached_out = dock({"exec", "web", "cat", "/www/d.html"}).out;
    if (detached_out.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  CHECK(detached_out == "detached\n");
  Outcome ex127 = dock({"exec", "web", "no-such-command"});
  CAPTURE(ex127.out, ex127.err);
  CHECK(ex127.status == 127);
  CHECK(ex127.err.find("no-such-command") != std::string::npos);
  // The exec's own process, not the container's: the container runs on.
  CHECK(http_get_retry(port, std::chrono::seconds(10)).find("hello-from-a-vm") != std::string::npos);

  // The web page in a real browser: Debian's headless chromium renders it
  // against this serve; the DOM must show the container, its port and its memory.
  std::string chromium = which("chromium");
  REQUIRE_FALSE(chromium.empty());  // tools/setup installs it
  Outcome page = run_process({chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                              "--dump-dom", "http://127.0.0.1:" + std::to_string(http_port) + "/ui"},
                             {"HOME=" + s.path});
  CAPTURE(page.err.substr(0, 2000));
  REQUIRE(page.status == 0);
  CHECK(page.out.find("<td>web</td><td>bb-test:1</td>") != std::string::npos);
  CHECK(page.out.find("127.0.0.1:" + std::to_string(port) + "-&gt;80/tcp") != std::string::npos);
  CHECK(page.out.find("<td class=\"running\">running</td>") != std::string::npos);
  CHECK(page.out.find("<td class=\"num private\">") != std::string::npos);
  CHECK(page.out.find(" MiB</td><td class=\"num shared\">") != std::string::npos);
  CHECK(page.out.find("<td><code>image-base-") != std::string::npos);
  CHECK(page.out.find("containers running<b id=\"running\">1 / ") != std::string::npos);
  // vicvmm ps shows the same container with its three memory figures.
  Outcome ps_vic = run_process({vicvmm_bin(), "ps"}, {"XDG_STATE_HOME=" + shared_state()});
  CAPTURE(ps_vic.out, ps_vic.err);
  CHECK(ps_vic.out.find(" web ") != std::string::npos);
  CHECK(ps_vic.out.find("127.0.0.1:" + std::to_string(port) + "->80") != std::string::npos);
  CHECK(ps_vic.out.find("without sharing") != std::string::npos);

  // Bad input: each a clear error, serve keeps serving.
  Outcome dup = dock({"run", "--name", "web", "bb-test:1", "true"});
  CHECK(dup.status == 125);
  CHECK(dup.err.find("is already in use") != std::string::npos);
  Outcome nope = dock({"run", "--rm", "no-such-image:1", "true"});
  CHECK(nope.status == 125);
  CHECK(nope.err.find("no-such-image") != std::string::npos);
  Outcome rm_running = dock({"rm", "web"});
  CHECK(rm_running.status == 1);
  CHECK(rm_running.err.find("cannot remove a running container") != std::string::npos);

  // A restart of serve keeps the running container (its VM is its own process).
  REQUIRE(serve->stop() == 0);
  CHECK(http_get_retry(port, std::chrono::seconds(10)).find("hello-from-a-vm") != std::string::npos);
  serve = std::make_unique<ServeProcess>(s.path, serve_args, shared_state());
  bool ready = serve->wait_ready(600);
  if (!ready) FAIL_CHECK("serve did not come back; its log:\n" << slurp(s.path + "/serve.log"));
  REQUIRE(ready);
  dock.sock = serve->sock;
  Outcome ps2 = dock({"ps", "--format", "{{.Names}} {{.Status}}"});
  CHECK(ps2.out.find("web Up") != std::string::npos);
  Outcome ex_again = dock({"exec", "web", "echo", "re-adopted"});  // the worker's exec socket outlives serve
  CAPTURE(ex_again.out, ex_again.err);
  CHECK(ex_again.out == "re-adopted\n");

  Outcome stop = dock({"stop", "web"});
  CAPTURE(stop.out, stop.err);
  CHECK(stop.status == 0);
  Outcome gone = dock({"ps", "-a", "--format", "{{.Names}} {{.Status}}"});
  CHECK(gone.out.find("web Exited (143)") != std::string::npos);
  Outcome ex_stopped = dock({"exec", "web", "true"});
  CHECK(ex_stopped.status != 0);
  CHECK(ex_stopped.err.find("is not running") != std::string::npos);
  CHECK(dock({"rm", "web"}).status == 0);
  CHECK(dock({"rm", "exit3"}).status == 0);
  Outcome rm_unknown = dock({"rm", "web"});
  CHECK(rm_unknown.status == 1);
  CHECK(rm_unknown.err.find("No such container: web") != std::string::npos);
  // With a template of its own, an image's containers are clones of that
  // template (warm page cache) instead of the base one.
  std::vector<std::string> vic_env = {"XDG_STATE_HOME=" + shared_state()};
  Outcome tc = run_process({vicvmm_bin(), "template", "create", "bbt-docker", "--image", "bb-test:1", "--force"}, vic_env);
  CAPTURE(tc.out, tc.err);
  REQUIRE(tc.status == 0);
  Outcome own = dock({"run", "--name", "own", "bb-test:1", "sh", "-c", "echo from-its-template"});
  CHECK(own.out == "from-its-template\n");
  Outcome which_tmpl = dock({"inspect", "-f", "{{.VicVmm.Template}}", "own"});
  CHECK(which_tmpl.out.find("/bbt-docker\n") != std::string::npos);
  Outcome used = dock({"rmi", "bb-test:1"});  // container "own" still exists (stopped)
  CHECK(used.status == 1);
  CHECK(used.err.find("container own") != std::string::npos);
  CHECK(dock({"rm", "own"}).status == 0);
  Outcome in_use = dock({"rmi", "bb-test:1"});
  CHECK(in_use.status == 1);  // the template still boots from it
  CHECK(run_process({vicvmm_bin(), "template", "rm", "bbt-docker"}, vic_env).status == 0);
  CHECK(dock({"rmi", "bb-test:1"}).status == 0);
  CHECK(serve->stop() == 0);
}
