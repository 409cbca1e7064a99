// libFuzzer target: `image load` (Store::load, image/load.cc) of an
// untrusted docker-archive or OCI image layout: manifest.json, oci-layout,
// index.json, nested indexes, manifests, configs and layer blobs, checked
// against the digests and sizes they claim, and (as a tar) the archive's
// member names, directories and symlinks (image/load_input.cc). Loads go
// into a store in a scratch directory (on /dev/shm when there is one),
// made afresh after each load that succeeds.
//
// Input layout: a mode byte, then members, each "@@ HEADER\n" and its
// content up to the next "\n@@ " (or the end). HEADER is a file's name,
// "name/" for a directory or "name -> target" for a symlink. In names,
// targets and contents, "@D<j>@", "@H<j>@" and "@S<j>@" become member j's
// digest ("sha256:<hex>"), hex digest and size (j before this member, or
// this member itself in its name), so descriptors can name blobs that exist.
//   mode % 3 == 0: the members are written as an image directory (names
//                  that are absolute or climb with ".." are skipped;
//                  symlinks are made last)
//   mode % 3 == 1: the members go into a tar file, names as given
//   mode % 3 == 2: the bytes after the mode byte are the archive file
//
// On success: each image has a well-formed id and layer digests, its
// config and layer blobs are in the store with the recorded sizes, its
// size is the sum of its layers', and Store::list() shows exactly these
// images. On failure: the store holds no blobs, records or tags (a refused
// load takes out what it added). Either way the store's tmp/ is empty.
// Run: tools/fuzz image_load [SECONDS]
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "image/digest.h"
#include "image/store.h"
#include "tests/fuzz/fuzz_check.h"

using namespace vicvmm;
using namespace vicvmm::image;
namespace fs = std::filesystem;

namespace {

struct Member {
  enum Kind { File, Dir, Symlink } kind = File;
  std::string name, target, content;
};

// "@D3@" and friends, for the members already parsed (`done`).
std::string substitute(std::string_view s, const std::vector<Member>& done) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '@' && i + 2 < s.size() && (s[i + 1] == 'D' || s[i + 1] == 'H' || s[i + 1] == 'S')) {
      size_t j = i + 2;
      size_t n = 0;
      while (j < s.size() && j < i + 6 && s[j] >= '0' && s[j] <= '9') n = n * 10 + (s[j++] - '0');
      if (j > i + 2 && j < s.size() && s[j] == '@' && n < done.size()) {
        const std::string& c = done[n].content;
        std::string d = sha256_of(c);
        out += s[i + 1] == 'D' ? d : s[i + 1] == 'H' ? digest_hex(d) : std::to_string(c.size());
        i = j;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::vector<Member> parse_members(std::string_view body) {
  std::vector<Member> out;
  if (!body.starts_with("@@ ")) return out;
  size_t pos = 0;
  while (pos < body.size() && out.size() < 64) {
    size_t nl = body.find('\n', pos);
    std::string_view header = body.substr(pos + 3, nl == std::string_view::npos ? std::string_view::npos : nl - pos - 3);
    size_t start = nl == std::string_view::npos ? body.size() : nl + 1;
    size_t next = body.find("\n@@ ", start);
    std::string_view content = body.substr(start, next == std::string_view::npos ? std::string_view::npos : next - start);
    Member m;
    std::string_view name = header;
    if (size_t arrow = header.find(" -> "); arrow != std::string_view::npos) {
      m.kind = Member::Symlink;
      name = header.substr(0, arrow);
      m.target = substitute(header.substr(arrow + 4), out);
    } else if (header.ends_with("/")) {
      m.kind = Member::Dir;
    } else {
      m.content = substitute(content, out);
    }
    out.push_back(std::move(m));
    out.back().name = substitute(name, out);  // a blob is named by its own digest: "blobs/sha256/@H3@"
    if (next == std::string_view::npos) break;
    pos = next + 1;
  }
  return out;
}

bool safe_name(const std::string& name) {
  if (name.empty() || name[0] == '/' || name.find('\0') != std::string::npos) return false;
  for (const auto& part : fs::path(name)) if (part == "..") return false;
  return true;
}

void write_bytes(const std::string& path, std::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return;  // e.g. a name that is a directory already
  (void)!write(fd, data.data(), data.size());
  close(fd);
}

// Files and directories first, symlinks last, so no write goes through a link.
void write_directory(const std::string& dir, const std::vector<Member>& members) {
  fs::create_directories(dir);
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& m : members) {
      if (!safe_name(m.name) || (m.kind == Member::Symlink) != (pass == 1)) continue;
      fs::path p = fs::path(dir) / m.name;
      std::error_code ec;
      fs::create_directories(p.parent_path(), ec);
      if (ec) continue;
      if (m.kind == Member::Dir) fs::create_directory(p, ec);
      else if (m.kind == Member::File) write_bytes(p, m.content);
      else (void)!symlink(m.target.c_str(), p.c_str());
    }
  }
}

void write_tar(const std::string& path, const std::vector<Member>& members) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) abort();
  for (const auto& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_perm(e, 0644);
    if (m.kind == Member::Dir) {
      archive_entry_set_filetype(e, AE_IFDIR);
    } else if (m.kind == Member::Symlink) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, m.target.c_str());
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, static_cast<la_int64_t>(m.content.size()));
    }
    if (archive_write_header(a, e) == ARCHIVE_OK && m.kind == Member::File)
      archive_write_data(a, m.content.data(), m.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

size_t entries(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  return n;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  FUZZ_CHECK(lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode));
  return static_cast<uint64_t>(st.st_size);
}

const std::string& scratch() {
  static const std::string dir = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : fs::temp_directory_path().string();
    std::string tmpl = base + "/vicvmm-fuzz-image-load-XXXXXX";
    if (!mkdtemp(tmpl.data())) abort();
    static std::string removed = tmpl;
    atexit([] {
      std::error_code ec;
      fs::remove_all(removed, ec);
    });
    return tmpl;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned mode = data[0] % 3;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::string root = scratch() + "/store", input_dir = scratch() + "/in", input_tar = scratch() + "/in.tar";
  std::error_code ec;
  for (const auto& p : {input_dir, input_tar}) fs::remove_all(p, ec);
  // One store for every input while loads fail (a refused load leaves it
  // empty: checked below); a fresh one after a load that succeeded.
  static std::optional<Store> store;
  if (!store) {
    fs::remove_all(root, ec);
    Limits limits;
    limits.max_unpacked_bytes = 1 << 20;
    limits.max_entries = 1000;
    auto opened = Store::open(root, limits);
    FUZZ_CHECK(opened.has_value());
    store.emplace(std::move(*opened));
  }

  std::string input;
  if (mode == 0) {
    write_directory(input_dir, parse_members(body));
    input = input_dir;
  } else if (mode == 1) {
    write_tar(input_tar, parse_members(body));
    input = input_tar;
  } else {
    write_bytes(input_tar, body);
    input = input_tar;
  }

  auto images = store->load(input);
  FUZZ_CHECK(entries(root + "/tmp") == 0);
  const std::string blobs = root + "/blobs/sha256/";
  if (!images) {
    FUZZ_CHECK(entries(blobs) == 0);
    FUZZ_CHECK(entries(root + "/images") == 0);
    FUZZ_CHECK(access((root + "/tags.json").c_str(), F_OK) != 0);
    return 0;
  }

  FUZZ_CHECK(!images->empty());
  std::set<std::string> ids;
  for (const auto& img : *images) {
    FUZZ_CHECK(valid_digest("sha256:" + img.id));
    ids.insert(img.id);
    uint64_t total = 0;
    (void)file_size(blobs + img.id);  // the config
    for (const auto& l : img.layers) {
      FUZZ_CHECK(valid_digest(l.digest) && valid_digest(l.diff_id));
      FUZZ_CHECK(file_size(blobs + digest_hex(l.digest)) == l.size);
      total += l.size;
    }
    FUZZ_CHECK(img.size == total);
  }
  auto list = store->list();
  FUZZ_CHECK(list.has_value());
  std::set<std::string> listed;
  for (const auto& img : *list) listed.insert(img.id);
  FUZZ_CHECK(listed == ids);
  store.reset();
  return 0;
}
