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

// Emptied through an open file: truncate(2) of a file to zero has ext4
// (auto_da_alloc) write it back at its next close, ~100-150 µs of CPU that
// would fall on the next create; closing it here clears that.
bool empty_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::ftruncate(fd.get(), 0) == 0;
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
    // The record and its state file, the log: all in place.
    VIC_TRY(make_empty_file(s.dir + "/config.json", 0644));
    VIC_TRY(make_empty_file(s.dir + "/state", 0644));
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
  static const std::set<std::string_view> kept = {"config.json", "state"};
  // config.json.tmp: an older serve replaced records by exchange with it.
  static const std::set<std::string_view> dropped = {"log",           "exec.sock", "exit.json",
                                                     "exit.json.tmp", "state.tmp", "config.json.tmp"};
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
  // The record and its states emptied: the next container's start from
  // nothing (a shorter record must not keep this one's tail).
  for (std::string_view n : kept)
    if (!empty_file(dir + "/" + std::string(n))) return false;
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

Result<UniqueFd> ContainerDirs::claim(const std::string& id, std::string_view record, bool may_make) {
  std::optional<Spare> s;
  {
    std::lock_guard lock(mu_);
    if (!ready_.empty()) {
      s = std::move(ready_.back());
      ready_.pop_back();
    }
  }
  if (!s) {
    if (!may_make) return api_err(EAGAIN, "no container directory made ahead");
    VIC_ASSIGN(auto made, make_spare());
    s = std::move(made);
  }
  // The record first: <root>/<id> appears with it, or not at all.
  auto placed = [&]() -> Result<> {
    const std::string path = s->dir + "/config.json";
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return sys_err("writing {}", path);
    // Empty in every spare (made so, or emptied by recycle): nothing to cut.
    VIC_TRY(image::write_all(fd.get(), record.data(), record.size()));
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

Result<> ContainerDirs::append_state(const std::string& dir, std::string_view line) {
  const std::string path = dir + "/state";
  std::string text(line);
  text += '\n';
  // O_CREAT: a directory of an earlier serve has no state file yet.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return sys_err("writing {}", path);
  VIC_TRY(image::write_all(fd.get(), text.data(), text.size()));
  const off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size < 0 || static_cast<size_t>(size) <= kStateCompactBytes) return {};
  // Compacted: the newest line alone, replacing the file whole.
  const std::string tmp = dir + "/state.tmp";
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out) return sys_err("writing {}", tmp);
  VIC_TRY(image::write_all(out.get(), text.data(), text.size()));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_err("replacing {}", path);
  return {};
}

std::optional<ContainerDirs::Record> ContainerDirs::read(const std::string& dir) {
  auto record = image::read_file_capped(dir + "/config.json", kMaxRecordBytes);
  if (!record || record->empty()) return std::nullopt;
  Record r{std::move(*record), {}};
  auto states = image::read_file_capped(dir + "/state", kMaxStateBytes);
  if (!states) return r;
  // Whole lines only: a last line without its newline was torn.
  size_t end = states->rfind('\n');
  while (end != std::string::npos && end > 0) {
    size_t begin = states->rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    if (end > begin) r.states.push_back(states->substr(begin, end - begin));
    if (begin == 0) break;
    end = begin - 1;
  }
  return r;
}

}  // namespace vicvmm::serve
