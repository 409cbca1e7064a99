// The C API as a runtime would use it: `meson install` into a scratch
// prefix, the C example (examples/fork_clones.c) compiled against that
// installed tree through pkg-config (not the build directory), then run:
// it boots a template, forks clones and prints their output and statuses.
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/subprocess.h"
#include "tools/vicvmm/options.h"

using namespace vicvmm::test;
namespace fs = std::filesystem;

TEST_CASE("C API: the example, built against an installed prefix through pkg-config, forks clones", "[linux][capi]") {
  const char* build = std::getenv("VICVMM_BUILD_ROOT");
  const char* source = std::getenv("VICVMM_SOURCE_ROOT");
  REQUIRE(build);
  REQUIRE(source);
  ScratchDir s;
  const std::string root = s.path + "/root";
  const std::string meson = which("meson");
  REQUIRE_FALSE(meson.empty());
  Outcome install = run_process({meson, "install", "-C", build, "--no-rebuild", "--quiet", "--destdir", root});
  CAPTURE(install.out, install.err);
  REQUIRE(install.status == 0);
  std::string pc, prefix = root + "/usr/local";
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.path().filename() == "vicvmm.pc") pc = e.path().parent_path();
  REQUIRE_FALSE(pc.empty());
  CHECK(fs::exists(prefix + "/include/vicvmm.h"));
  CHECK(fs::exists(prefix + "/bin/vicvmm"));

  // --define-variable: the .pc names /usr/local, the tree is under DESTDIR.
  std::vector<std::string> env = {"PKG_CONFIG_PATH=" + pc};
  Outcome flags = run_process({"/bin/sh", "-c", "pkg-config --define-variable=prefix=" + prefix +
                                                     " --cflags --libs vicvmm"}, env);
  CAPTURE(flags.out, flags.err);
  REQUIRE(flags.status == 0);
  CHECK(flags.out.find(prefix) != std::string::npos);  // not the build directory
  CHECK(flags.out.find(build) == std::string::npos);
  std::string libdir = flags.out.substr(flags.out.find("-L") + 2);
  libdir = libdir.substr(0, libdir.find(' '));
  const std::string exe = s.path + "/fork_clones";
  const char* sanitize = std::getenv("VICVMM_SANITIZE");
  std::string cflags = "-std=c11 -Wall -Werror";
  if (sanitize && *sanitize && std::string(sanitize) != "none") cflags += std::string(" -fsanitize=") + sanitize;
  Outcome cc = run_process({"/bin/sh", "-c", "cc " + cflags + " " + std::string(source) +
                                                 "/examples/fork_clones.c " + flags.out.substr(0, flags.out.size() - 1) +
                                                 " -Wl,-rpath," + libdir + " -o " + exe});
  CAPTURE(cc.out, cc.err);
  REQUIRE(cc.status == 0);
  // meson test puts the build tree's library directories in
  // LD_LIBRARY_PATH: the example must find the installed one, so not that.
  const std::vector<std::string> no_build_libs = {"LD_LIBRARY_PATH="};
  Outcome ldd = run_process({"/usr/bin/ldd", exe}, no_build_libs);
  CAPTURE(ldd.out, ldd.err);
  CHECK(ldd.out.find(libdir + "/libvicvmm.so.0") != std::string::npos);

  Outcome run = run_process({exe, vicvmm::cli::default_kernel(), vicvmm::cli::default_initrd(), "3"}, no_build_libs);
  CAPTURE(run.out, run.err);
  std::printf("[capi] the C example's output:\n%s", run.out.c_str());
  CHECK(run.status == 0);
  CHECK(run.out.find("libvicvmm 0.1.0") != std::string::npos);
  for (int i = 1; i <= 3; ++i) {
    CHECK(run.out.find("[clone " + std::to_string(i) + "] hello from c-clone-" + std::to_string(i)) != std::string::npos);
    CHECK(run.out.find("clone " + std::to_string(i) + " exited with status " + std::to_string(i)) != std::string::npos);
  }
  CHECK(run.out.find("expected error: snapshot /nonexistent-snapshot") != std::string::npos);

  // The C++ API from the same prefix: headers under include/vicvmm/, the
  // static archive and vicvmm-cpp.pc.
  CHECK(fs::exists(prefix + "/include/vicvmm/clone/pool.h"));
  Outcome cpp_flags = run_process({"/bin/sh", "-c", "pkg-config --define-variable=prefix=" + prefix +
                                                         " --cflags --libs vicvmm-cpp"}, env);
  CAPTURE(cpp_flags.out, cpp_flags.err);
  REQUIRE(cpp_flags.status == 0);
  CHECK(cpp_flags.out.find(prefix + "/include/vicvmm") != std::string::npos);
  CHECK(cpp_flags.out.find(build) == std::string::npos);
  const std::string cpp_exe = s.path + "/pool_clones";
  std::string cxxflags = "-std=c++20 -Wall -Werror";
  if (sanitize && *sanitize && std::string(sanitize) != "none") cxxflags += std::string(" -fsanitize=") + sanitize;
  Outcome cxx = run_process({"/bin/sh", "-c", "c++ " + cxxflags + " " + std::string(source) +
                                                  "/examples/pool_clones.cc " +
                                                  cpp_flags.out.substr(0, cpp_flags.out.size() - 1) + " -o " + cpp_exe});
  CAPTURE(cxx.out, cxx.err);
  REQUIRE(cxx.status == 0);
  Outcome pooled = run_process({cpp_exe, vicvmm::cli::default_kernel(), vicvmm::cli::default_initrd(), "3"}, no_build_libs);
  CAPTURE(pooled.out, pooled.err);
  std::printf("[capi] the C++ example's output:\n%s", pooled.out.c_str());
  CHECK(pooled.status == 0);
  CHECK(pooled.out.find("3 shells built ahead") != std::string::npos);
  for (int i = 1; i <= 3; ++i) {
    CHECK(pooled.out.find("hello from cpp-clone-" + std::to_string(i)) != std::string::npos);
    CHECK(pooled.out.find("pool clone " + std::to_string(i) + ": command exited, status " + std::to_string(i)) !=
          std::string::npos);
  }
  CHECK(pooled.out.find("expected error: snapshot /nonexistent-snapshot") != std::string::npos);
}
