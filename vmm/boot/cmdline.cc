#include "vmm/boot/cmdline.h"

#include <algorithm>

namespace vicvmm::boot {
namespace {

// Splits on spaces/tabs outside double quotes; rejects bytes the boot
// protocol cannot carry (NUL ends the string, newlines end the kernel's line).
Result<std::vector<std::string>> split_words(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return err("kernel command line: word contains a NUL byte");
  if (text.find_first_of("\r\n") != std::string_view::npos)
    return err("kernel command line: word contains a newline");

  std::vector<std::string> words;
  std::string cur;
  bool quoted = false;
  for (char c : text) {
    if (c == '"') quoted = !quoted;
    if (!quoted && (c == ' ' || c == '\t')) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur.push_back(c);
  }
  if (quoted) return err("kernel command line: unterminated quote in \"{}\"", text);
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

std::string_view key_of(std::string_view word) { return word.substr(0, word.find('=')); }

std::string join(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) {
    if (!s.empty()) s += ' ';
    s += w;
  }
  return s;
}

std::string render_parts(const std::vector<std::string>& words, const std::vector<std::string>& init_args) {
  std::string s = join(words);
  if (!init_args.empty()) s += (s.empty() ? "-- " : " -- ") + join(init_args);
  return s;
}

}  // namespace

Result<> Cmdline::commit(std::vector<std::string> words, std::vector<std::string> init_args) {
  size_t len = render_parts(words, init_args).size();
  if (len > kMaxLength)
    return err("kernel command line: {} bytes exceeds the {}-byte limit", len, kMaxLength);
  words_ = std::move(words);
  init_args_ = std::move(init_args);
  return {};
}

Result<> Cmdline::append(std::string_view text) {
  VIC_ASSIGN(std::vector<std::string> parts, split_words(text));
  std::vector<std::string> words = words_;
  std::vector<std::string> init_args = init_args_;
  auto dashes = std::find(parts.begin(), parts.end(), "--");
  words.insert(words.end(), parts.begin(), dashes);
  if (dashes != parts.end()) init_args.insert(init_args.end(), dashes + 1, parts.end());
  return commit(std::move(words), std::move(init_args));
}

Result<> Cmdline::append_if_absent(std::string_view text) {
  VIC_ASSIGN(std::vector<std::string> parts, split_words(text));
  std::vector<std::string> words = words_;
  for (auto& p : parts) {
    if (p == "--") return err("kernel command line: \"--\" cannot be appended conditionally");
    bool present = std::any_of(words.begin(), words.end(),
                               [&](const std::string& w) { return key_of(w) == key_of(p); });
    if (!present) words.push_back(std::move(p));
  }
  return commit(std::move(words), init_args_);
}

Result<> Cmdline::append_init_args(std::string_view args) {
  VIC_ASSIGN(std::vector<std::string> parts, split_words(args));
  std::vector<std::string> init_args = init_args_;
  init_args.insert(init_args.end(), parts.begin(), parts.end());
  return commit(words_, std::move(init_args));
}

bool Cmdline::contains_key(std::string_view key) const {
  return std::any_of(words_.begin(), words_.end(), [&](const std::string& w) { return key_of(w) == key_of(key); });
}

std::string Cmdline::render() const { return render_parts(words_, init_args_); }

}  // namespace vicvmm::boot
