// serve's container directories: made ahead with their files and a
// listening exec socket, claimed into place with the record in them, and
// each change of state a line appended beside the record.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "serve/container_dirs.h"

using namespace vicvmm;
using namespace vicvmm::serve;
namespace fs = std::filesystem;

namespace {
struct ScratchDir {
  std::string path;
  ScratchDir() {
    std::string t = fs::temp_directory_path().string() + "/vicvmm-dirs-XXXXXX";
    REQUIRE(mkdtemp(t.data()));
    path = t;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t spares_in(const std::string& root) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(root))
    if (ContainerDirs::is_spare_name(e.path().filename().string())) ++n;
  return n;
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}
}  // namespace

TEST_CASE("container dirs: refill makes `keep` directories with their files and a listening exec socket", "[serve]") {
  ScratchDir root;
  ContainerDirs dirs(root.path, 3);
  CHECK(dirs.wants_refill());
  CHECK(dirs.refill());
  CHECK_FALSE(dirs.wants_refill());
  CHECK_FALSE(dirs.refill());  // nothing wanted
  CHECK(spares_in(root.path) == 3);

  auto exec = dirs.claim("abc123", "{\"id\":\"abc123\"}\n");
  REQUIRE(exec.has_value());
  const std::string dir = root.path + "/abc123";
  CHECK(slurp(dir + "/config.json") == "{\"id\":\"abc123\"}\n");
  CHECK(fs::is_regular_file(dir + "/log"));
  CHECK(fs::file_size(dir + "/log") == 0);
  CHECK(spares_in(root.path) == 2);
  CHECK(dirs.wants_refill());

  // The socket moved with its directory and still takes connections.
  int c = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  REQUIRE(c >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string sock = dir + "/exec.sock";
  REQUIRE(sock.size() < sizeof a.sun_path);
  std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
  CHECK(::connect(c, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  int accepted = ::accept4(exec->get(), nullptr, nullptr, SOCK_CLOEXEC);
  CHECK(accepted >= 0);
  if (accepted >= 0) ::close(accepted);
  ::close(c);
}

TEST_CASE("container dirs: a claim with none ready makes one; names of spares never look like containers", "[serve]") {
  ScratchDir root;
  ContainerDirs dirs(root.path, 2);
  auto exec = dirs.claim("feed", "{}\n");
  REQUIRE(exec.has_value());
  CHECK(exec->get() >= 0);
  CHECK(slurp(root.path + "/feed/config.json") == "{}\n");
  CHECK(ContainerDirs::is_spare_name(".spare-0123"));
  CHECK_FALSE(ContainerDirs::is_spare_name("0123abcd"));
  // A second claim of the same id fails cleanly and leaves no spare behind.
  REQUIRE(dirs.refill());
  fs::create_directory(root.path + "/taken");
  std::ofstream(root.path + "/taken/x") << "x";  // rename onto a non-empty directory fails
  auto again = dirs.claim("taken", "{}\n");
  CHECK_FALSE(again.has_value());
  CHECK(spares_in(root.path) == 1);
}

TEST_CASE("container dirs: states are lines appended beside the record, read newest first, torn ones skipped", "[serve]") {
  ScratchDir root;
  ContainerDirs dirs(root.path, 1);
  REQUIRE(dirs.claim("c1", "{\"id\":\"c1\"}\n").has_value());
  const std::string dir = root.path + "/c1";
  const ino_t record_ino = inode_of(dir + "/config.json"), state_ino = inode_of(dir + "/state");
  auto fresh = ContainerDirs::read(dir);
  REQUIRE(fresh.has_value());
  CHECK(fresh->record == "{\"id\":\"c1\"}\n");
  CHECK(fresh->states.empty());

  REQUIRE(ContainerDirs::append_state(dir, "{\"state\":\"running\"}").has_value());
  REQUIRE(ContainerDirs::append_state(dir, "{\"state\":\"exited\"}").has_value());
  CHECK(slurp(dir + "/state") == "{\"state\":\"running\"}\n{\"state\":\"exited\"}\n");
  // No file was made or replaced: the record is never rewritten.
  CHECK(inode_of(dir + "/config.json") == record_ino);
  CHECK(inode_of(dir + "/state") == state_ino);
  std::ofstream(dir + "/state", std::ios::app) << "{\"state\":\"runn";  // a write torn by a crash
  auto r = ContainerDirs::read(dir);
  REQUIRE(r.has_value());
  REQUIRE(r->states.size() == 2);
  CHECK(r->states[0] == "{\"state\":\"exited\"}");  // the newest whole line first
  CHECK(r->states[1] == "{\"state\":\"running\"}");
  CHECK(r->record == "{\"id\":\"c1\"}\n");

  // Past the limit the file holds the newest line alone.
  const std::string line = "{\"state\":\"" + std::string(1000, 'x') + "\"}";
  for (size_t i = 0; i < ContainerDirs::kStateCompactBytes / line.size() + 2; ++i)
    REQUIRE(ContainerDirs::append_state(dir, line).has_value());
  CHECK(fs::file_size(dir + "/state") <= ContainerDirs::kStateCompactBytes);
  REQUIRE(ContainerDirs::append_state(dir, "{\"state\":\"last\"}").has_value());
  r = ContainerDirs::read(dir);
  REQUIRE(r.has_value());
  CHECK(r->states.front() == "{\"state\":\"last\"}");

  // A directory of an earlier serve (its record held its state): the
  // first state line makes the file; no record at all reads as nothing.
  fs::create_directory(root.path + "/old");
  std::ofstream(root.path + "/old/config.json") << "{}";
  CHECK(ContainerDirs::read(root.path + "/old")->states.empty());
  REQUIRE(ContainerDirs::append_state(root.path + "/old", "{\"state\":\"exited\"}").has_value());
  CHECK(ContainerDirs::read(root.path + "/old")->states.size() == 1);
  CHECK_FALSE(ContainerDirs::read(root.path + "/missing").has_value());
  CHECK_FALSE(ContainerDirs::append_state(root.path + "/missing", "{}").has_value());
}

TEST_CASE("container dirs: leftovers of an earlier run are removed, containers are not", "[serve]") {
  ScratchDir root;
  {
    ContainerDirs dirs(root.path, 2);
    REQUIRE(dirs.refill());
    REQUIRE(dirs.claim("kept", "{}\n").has_value());
  }  // its ready spares are removed with it
  CHECK(spares_in(root.path) == 0);
  fs::create_directory(root.path + "/.spare-crashed");
  ContainerDirs again(root.path, 2);
  CHECK(spares_in(root.path) == 0);
  CHECK(fs::exists(root.path + "/kept/config.json"));
}

TEST_CASE("container dirs: a removed container's directory is made a spare again, with a new log and socket", "[serve]") {
  ScratchDir root;
  ContainerDirs dirs(root.path, 1, /*keep_recycled=*/2);
  auto first = dirs.claim("gone1", "{\"id\":\"gone1\",\"long\":\"" + std::string(500, 'x') + "\"}\n");
  REQUIRE(first.has_value());
  const std::string dir = root.path + "/gone1";
  std::ofstream(dir + "/log") << "the first container's output";
  std::ofstream(dir + "/exit.json") << "{\"status\":0}";
  REQUIRE(ContainerDirs::append_state(dir, "{\"state\":\"exited\"}").has_value());
  const ino_t dir_ino = inode_of(dir), record_ino = inode_of(dir + "/config.json");
  first->reset();  // its worker is gone
  std::ifstream reader(dir + "/log");  // `docker logs -f` of the removed container, still reading

  REQUIRE(dirs.recycle(dir));
  CHECK_FALSE(fs::exists(dir));
  CHECK(spares_in(root.path) == 1);
  auto again = dirs.claim("next", "{\"id\":\"next\"}\n");
  REQUIRE(again.has_value());
  const std::string next = root.path + "/next";
  CHECK(inode_of(next) == dir_ino);  // the same directory and records...
  CHECK(inode_of(next + "/config.json") == record_ino);
  CHECK(slurp(next + "/config.json") == "{\"id\":\"next\"}\n");  // ...holding only the new record (no old tail)
  CHECK(ContainerDirs::read(next)->states.empty());                 // and none of the old states
  CHECK(fs::file_size(next + "/log") == 0);  // a log of its own: the old reader never sees it
  std::ofstream(next + "/log") << "the next container's output";
  std::stringstream seen;
  seen << reader.rdbuf();
  CHECK(seen.str() == "the first container's output");
  CHECK_FALSE(fs::exists(next + "/exit.json"));
  int c = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  REQUIRE(c >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string sock = next + "/exec.sock";
  std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
  CHECK(::connect(c, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);  // listening again
  ::close(c);
}

TEST_CASE("container dirs: recycling stops at its limit and at files it does not know", "[serve]") {
  ScratchDir root;
  ContainerDirs dirs(root.path, 1, 2);
  for (const char* id : {"r1", "r2", "r3", "odd"}) REQUIRE(dirs.claim(id, "{}\n").has_value());
  std::ofstream(root.path + "/odd/core") << "?";
  CHECK_FALSE(dirs.recycle(root.path + "/odd"));  // a file of unknown use: the caller removes it all
  CHECK(fs::exists(root.path + "/odd/core"));
  CHECK(dirs.recycle(root.path + "/r1"));
  CHECK(dirs.recycle(root.path + "/r2"));
  CHECK_FALSE(dirs.recycle(root.path + "/r3"));  // two spares kept: enough
  CHECK(fs::exists(root.path + "/r3/config.json"));
  CHECK(spares_in(root.path) == 2);
  CHECK_FALSE(dirs.recycle(root.path + "/missing"));
}
