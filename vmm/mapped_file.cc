#include "vmm/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

namespace vicvmm {

Result<MappedFile> MappedFile::open(const std::string& path, const char* what) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever
  // (it is refused below as not a regular file); no effect on a file.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return sys_err("{} {}", what, path);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return sys_err("{} {}", what, path);
  if (!S_ISREG(st.st_mode)) return err("{} {}: not a regular file", what, path);
  if (st.st_size == 0) return err("{} {}: file is empty", what, path);
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (p == MAP_FAILED) return sys_err("{} {}: mmap", what, path);
  f.map_ = Mapping(p, f.size_);
  return f;
}

}  // namespace vicvmm
