// The kernel command line, assembled word by word.
//
// The VMM merges base defaults, host-required words and user words; words
// after "--" go to init and always render last. The rendered line must fit
// the boot protocol buffer (kCmdlineMaxSize including the NUL).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/boot/layout.h"
#include "vmm/result.h"

namespace vicvmm::boot {

class Cmdline {
 public:
  static constexpr size_t kMaxLength = kCmdlineMaxSize - 1;

  // Appends space-separated words ("a=1 b", double quotes keep spaces inside
  // a word as the kernel's parser does). A "--" word sends the rest to init.
  // On error nothing is appended.
  Result<> append(std::string_view words);

  // Appends each word whose key is not present yet. The key of "key=value"
  // is "key"; a bare word is its own key. "--" is rejected here.
  Result<> append_if_absent(std::string_view words);

  // Appends arguments for init (rendered after " -- ").
  Result<> append_init_args(std::string_view args);

  // True when a kernel word (not an init argument) has this key ("key" or "key=").
  bool contains_key(std::string_view key) const;

  std::string render() const;
  size_t length() const { return render().size(); }

 private:
  Result<> commit(std::vector<std::string> words, std::vector<std::string> init_args);

  std::vector<std::string> words_;
  std::vector<std::string> init_args_;
};

}  // namespace vicvmm::boot
