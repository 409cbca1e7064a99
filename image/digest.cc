#include "image/digest.h"

#include <fcntl.h>
#include <unistd.h>

#include "image/fs_util.h"
#include "vmm/unique_fd.h"

namespace vicvmm::image {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Allocation failure is the only way this fails; abort rather than hash nothing.
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) std::abort();
}

void Sha256::update(const void* data, size_t len) {
  if (len) EVP_DigestUpdate(ctx_.get(), data, len);
}

std::string Sha256::digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string sha256_of(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.digest();
}

bool valid_digest(std::string_view digest) {
  if (digest.size() != 7 + 64 || digest.substr(0, 7) != "sha256:") return false;
  for (char c : digest.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string digest_hex(std::string_view digest) {
  return valid_digest(digest) ? std::string(digest.substr(7)) : std::string();
}

Result<FileDigest> sha256_file(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err("{}", path);
  Sha256 h;
  FileDigest out;
  CopyBuffer buf;
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_err("reading {}", path);
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
    out.size += static_cast<uint64_t>(n);
  }
  out.digest = h.digest();
  return out;
}

}  // namespace vicvmm::image
