// A container's directory, <containers>/<id>/: its record (config.json),
// log, exit.json and exec socket. Making a file is the dearest part of a
// create + start here: on this host's ext4 (no journal) each new inode costs
// ~170 µs of kernel CPU once containers come and go (the allocator skips
// recently deleted inodes by reading the inode table), and a create + start
// made four (the directory, two temporary records, the log). So directories
// are made ahead, off the request path, with every file in place and the
// exec socket bound and listening; a create writes its record into one's
// empty config.json and renames the directory into place. The record never
// changes after that: each change of state (start, exit) is one line
// appended to the `state` file beside it, the last whole line being the
// state now (one write, where replacing the record took an open, a write,
// a truncate and an exchange; a line torn by a crash is simply not whole). A
// removed container's directory is made a spare again (recycle): its
// directory and record files stay, only its log, exit file and socket are
// new, which halves the inodes a container costs.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm::serve {

class ContainerDirs {
 public:
  // `root`: the containers' directory; `keep`: directories kept made ahead;
  // `keep_recycled`: how many spares removed containers may leave (a burst
  // of removals before a burst of creates). Leftovers of an earlier run
  // (never claimed) are removed.
  ContainerDirs(std::string root, size_t keep, size_t keep_recycled = 32);
  ~ContainerDirs();
  ContainerDirs(const ContainerDirs&) = delete;
  ContainerDirs& operator=(const ContainerDirs&) = delete;

  // Makes <root>/<id> holding `record` as config.json (a directory made
  // ahead if one is ready, else one made now unless `may_make` is false:
  // then EAGAIN) and returns its exec socket, listening (for the
  // container's worker).
  Result<UniqueFd> claim(const std::string& id, std::string_view record, bool may_make = true);

  // Appends `line` (one line of JSON, no newline) to <dir>/state. Past
  // kStateCompactBytes the file is replaced by one holding just this line.
  static Result<> append_state(const std::string& dir, std::string_view line);
  static constexpr size_t kStateCompactBytes = 16 << 10;
  // Reading refuses more: a record holds docker's create body (capped by
  // serve at 64 MiB), the state file one line past the compaction size.
  static constexpr size_t kMaxRecordBytes = 80ull << 20, kMaxStateBytes = 1 << 20;

  // <dir>/config.json, and the whole lines of <dir>/state, newest first
  // (none for a directory of an earlier serve, whose record held its
  // state); nullopt without a record.
  struct Record {
    std::string record;
    std::vector<std::string> states;
  };
  static std::optional<Record> read(const std::string& dir);

  // A removed container's directory `dir` becomes a spare: its log, exit
  // file and exec socket removed (a reader still holding the old log must
  // never see the next container's output), the directory and the two
  // record files kept (emptied), a new log and listening socket made. Only for a
  // container whose worker is known to be gone (nothing writes there any
  // more). False, with `dir` untouched or partly emptied, when it is not
  // taken: enough spares, or files it does not know; the caller removes it.
  bool recycle(const std::string& dir);

  // Makes directories until `keep` are ready; false when none was wanted.
  // Call it off the request path (serve's monitor thread does).
  bool refill();
  bool wants_refill() const;

  // Names in <root> that are not containers (directories made ahead).
  static bool is_spare_name(std::string_view name);

 private:
  struct Spare {
    std::string dir;
    UniqueFd exec_listener;
  };
  Result<Spare> make_spare() const;
  // The log and the listening exec socket, in a spare that has its records.
  static Result<> add_log_and_socket(Spare& s);

  const std::string root_;
  const size_t keep_, keep_recycled_;
  mutable std::mutex mu_;
  std::vector<Spare> ready_;
};

}  // namespace vicvmm::serve
