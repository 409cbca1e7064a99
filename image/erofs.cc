// The image's root filesystem as an EROFS disk: layers applied in order
// onto a private staging tree, then mkfs.erofs (erofs-utils 1.5 has no tar
// input), renamed into place. Cached by image id.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image/fs_util.h"
#include "image/records.h"
#include "image/store.h"
#include "image/unpack.h"

extern char** environ;

namespace vicvmm::image {

namespace {

// Runs argv (found on PATH); returns its stderr on failure in the error.
Result<void> run_tool(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return sys_err("pipe");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 2);
  std::vector<std::string> store = argv;
  std::vector<char*> args;
  for (auto& a : store) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  write_end.reset();
  if (rc != 0) {
    errno = rc;
    return sys_err("running {} (install erofs-utils)", argv[0]);
  }
  std::string output;
  char buf[4096];
  for (;;) {
    ssize_t n = read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < 65536) output.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return sys_err("waiting for {}", argv[0]);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (size_t nl = output.rfind('\n'); nl != std::string::npos) output = output.substr(nl + 1);  // the last line says why
  std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                      : fmt::format("signal {}", WTERMSIG(status));
  return err("{} failed ({}){}{}", argv[0], how, output.empty() ? "" : ": ", output);
}

}  // namespace

std::optional<std::string> Store::erofs_disk_if_built(const Image& image) const {
  if (digest_hex("sha256:" + image.id).empty()) return std::nullopt;
  std::string disk = StorePaths{root_}.erofs(image.id);
  if (access(disk.c_str(), F_OK) != 0) return std::nullopt;
  return disk;
}

Result<std::string> Store::erofs_disk(const Image& image) {
  StorePaths paths{root_};
  if (digest_hex("sha256:" + image.id).empty()) return err("image '{}': malformed id", image.id);
  if (auto built = erofs_disk_if_built(image)) return *built;
  std::string what = "image " + image.id.substr(0, 12);
  std::string disk = paths.erofs(image.id);

  // Shared: no remove() drops the blobs while we read them. The per-image
  // lock lets one process build while the others wait for its result.
  auto store_lock = FileLock::acquire(paths.lock(), false);
  if (!store_lock) return with_context(store_lock.error(), what);
  auto build_lock = FileLock::acquire(paths.erofs_lock(image.id), true);
  if (!build_lock) return with_context(build_lock.error(), what);
  if (access(disk.c_str(), F_OK) == 0) return disk;
  auto record = read_record(paths, image.id);
  if (!record) return with_context(record.error(), what);

  auto staging = TempDir::create(paths.tmp(), "unpack-");
  if (!staging) return with_context(staging.error(), what);
  UniqueFd root(::open(staging->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_err("{}: {}", what, staging->path());
  if (fchmod(root.get(), 0755) != 0) return sys_err("{}: chmod {}", what, staging->path());  // mkdtemp made it 0700
  UnpackState state;
  for (const auto& layer : record->image.layers) {
    LayerSource source{paths.blob(layer.digest), layer.digest, "layer " + layer.digest};
    if (auto r = apply_layer(root.get(), source, limits_, state); !r) return with_context(r.error(), what);
  }
  auto out = TempFile::create(paths.root + "/erofs", ".build-");
  if (!out) return with_context(out.error(), what);
  // Files keep their own mtimes (in erofs-utils 1.5, -T would stamp every
  // file with one time). No -z: uncompressed.
  if (auto r = run_tool({"mkfs.erofs", "--quiet", "--preserve-mtime", out->path(), staging->path()}); !r)
    return with_context(r.error(), what);
  if (auto r = out->commit(disk); !r) return with_context(r.error(), what);
  return disk;
}

}  // namespace vicvmm::image
