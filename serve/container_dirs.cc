#include "serve/container_dirs.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>

#include "image/fs_util.h"
#include "serve/api_error.h"
#include "serve/worker_protocol.h"

namespace vicvmm::serve {

namespace {
constexpr std::string_view kSparePrefix = ".spare-";

Result<> make_empty_file(const std::string& path, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return sys_err("creating {}", path);
  return {};
}
}  // namespace

ContainerDirs::ContainerDirs(std::string root, size_t keep, size_t keep_recycled)
    : root_(std::move(root)), keep_(keep), keep_recycled_(std::max(keep, keep_recycled)) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root_, ec))
    if (is_spare_name(e.path().filename().string())) std::filesystem::remove_all(e.path(), ec);
}

ContainerDirs::~ContainerDirs() {
  std::error_code ec;
  for (const auto& s : ready_) std::filesystem::remove_all(s.dir, ec);
}

bool ContainerDirs::is_spare_name(std::string_view name) { return name.starts_with(kSparePrefix); }

Result<> ContainerDirs::add_log_and_socket(Spare& s) {
  VIC_TRY(make_empty_file(s.dir + "/log", 0640));
  VIC_ASSIGN(s.exec_listener, listen_seqpacket(s.dir + "/exec.sock"));
  return {};
}

Result<ContainerDirs::Spare> ContainerDirs::make_spare() const {
  std::string name = random_hex(8);
  if (name.empty()) return sys_err("container directory: getrandom");
  Spare s;
  s.dir = root_ + "/" + std::string(kSparePrefix) + name;
  if (::mkdir(s.dir.c_str(), 0755) != 0) return sys_err("creating {}", s.dir);
  auto made = [&]() -> Result<> {
    // The record and the file it is exchanged with, the log: all in place.
    VIC_TRY(make_empty_file(s.dir + "/config.json", 0644));
    VIC_TRY(make_empty_file(s.dir + "/config.json.tmp", 0644));
    return add_log_and_socket(s);
  }();
  if (!made) {
    std::error_code ec;
    std::filesystem::remove_all(s.dir, ec);
    return tl::unexpected(made.error());
  }
  return s;
}

bool ContainerDirs::recycle(const std::string& dir) {
  {
    std::lock_guard lock(mu_);
    if (ready_.size() >= keep_recycled_) return false;
  }
  // What a container leaves: kept, or removed to be made anew. Anything
  // else (an older serve's layout): not recycled.
  static const std::set<std::string_view> kept = {"config.json", "config.json.tmp"};
  static const std::set<std::string_view> dropped = {"log", "exec.sock", "exit.json", "exit.json.tmp"};
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  bool known = true;
  bool has_records = true;
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    if (dropped.count(n)) names.emplace_back(n);
    else if (!kept.count(n)) known = false;
  }
  closedir(d);
  for (std::string_view n : kept)
    if (::access((dir + "/" + std::string(n)).c_str(), F_OK) != 0) has_records = false;
  if (!known || !has_records) return false;
  for (const auto& n : names)
    if (::unlink((dir + "/" + n).c_str()) != 0 && errno != ENOENT) return false;
  // The records emptied, not left for the next container's directory to
  // carry (the first exchange would keep this one's record beside its own).
  for (std::string_view n : kept)
    if (::truncate((dir + "/" + std::string(n)).c_str(), 0) != 0) return false;
  std::string name = random_hex(8);
  if (name.empty()) return false;
  Spare s;
  s.dir = root_ + "/" + std::string(kSparePrefix) + name;
  if (::rename(dir.c_str(), s.dir.c_str()) != 0) return false;
  if (!add_log_and_socket(s)) {
    std::error_code ec;
    std::filesystem::remove_all(s.dir, ec);  // gone, as the caller would have removed it
    return true;
  }
  std::lock_guard lock(mu_);
  ready_.push_back(std::move(s));
  return true;
}

bool ContainerDirs::wants_refill() const {
  std::lock_guard lock(mu_);
  return ready_.size() < keep_;
}

bool ContainerDirs::refill() {
  bool made = false;
  while (wants_refill()) {
    auto s = make_spare();
    if (!s) return made;  // e.g. a full disk: creates make theirs, and report it
    std::lock_guard lock(mu_);
    ready_.push_back(std::move(*s));
    made = true;
  }
  return made;
}

Result<UniqueFd> ContainerDirs::claim(const std::string& id, std::string_view record) {
  std::optional<Spare> s;
  {
    std::lock_guard lock(mu_);
    if (!ready_.empty()) {
      s = std::move(ready_.back());
      ready_.pop_back();
    }
  }
  if (!s) {
    VIC_ASSIGN(auto made, make_spare());
    s = std::move(made);
  }
  // The record first: <root>/<id> appears with it, or not at all.
  auto placed = [&]() -> Result<> {
    VIC_TRY(write_record(s->dir, record));
    const std::string dir = root_ + "/" + id;
    if (::rename(s->dir.c_str(), dir.c_str()) != 0) return sys_err("container {}: its directory", id.substr(0, 12));
    return {};
  }();
  if (!placed) {
    std::error_code ec;
    std::filesystem::remove_all(s->dir, ec);
    return tl::unexpected(placed.error());
  }
  return std::move(s->exec_listener);
}

Result<> ContainerDirs::write_record(const std::string& dir, std::string_view record) {
  const std::string tmp = dir + "/config.json.tmp", path = dir + "/config.json";
  {
    // Overwritten from the start, then cut to length: no O_TRUNC, whose truncation to
    // zero has ext4 (auto_da_alloc) write the file back at close, ~100-150
    // µs of CPU here against ~8 µs this way.
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) return sys_err("writing {}", tmp);
    VIC_TRY(image::write_all(fd.get(), record.data(), record.size()));  // from offset 0: just opened
    if (::ftruncate(fd.get(), static_cast<off_t>(record.size())) != 0) return sys_err("writing {}", tmp);
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) return {};
  // No record yet (a directory of an earlier serve), or a filesystem
  // without exchange: a plain rename (the next write makes a new tmp).
  if (errno != ENOENT && errno != EINVAL && errno != ENOSYS) return sys_err("replacing {}", path);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_err("replacing {}", path);
  return {};
}

}  // namespace vicvmm::serve
