// SHA-256 digests as OCI writes them: "sha256:<64 lowercase hex>".
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "vmm/result.h"

namespace vicvmm::image {

// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  // "sha256:<hex>"; the hasher is finished afterwards.
  std::string digest();

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

std::string sha256_of(std::string_view data);

// True for "sha256:" followed by exactly 64 lowercase hex digits.
bool valid_digest(std::string_view digest);
// The hex part of a valid digest ("" otherwise).
std::string digest_hex(std::string_view digest);

// Hashes a whole file: "sha256:<hex>" and its size.
struct FileDigest {
  std::string digest;
  uint64_t size = 0;
};
Result<FileDigest> sha256_file(const std::string& path);

}  // namespace vicvmm::image
