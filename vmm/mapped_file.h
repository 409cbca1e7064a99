// A whole file mapped read-only, for kernel and initrd images.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vmm/result.h"
#include "vmm/unique_fd.h"

namespace vicvmm {

class MappedFile {
 public:
  // `what` names the file in errors ("kernel", "initrd").
  static Result<MappedFile> open(const std::string& path, const char* what);

  std::span<const uint8_t> bytes() const { return {map_.bytes(), size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  Mapping map_;
  size_t size_ = 0;
};

}  // namespace vicvmm
