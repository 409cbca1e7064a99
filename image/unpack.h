// Applies image layers (tar streams, OCI whiteouts) onto a directory tree,
// safely against hostile archives: every lookup is confined to the root by
// the kernel (openat2 RESOLVE_IN_ROOT), entries are created relative to
// their parent's fd and never written through an existing path.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "image/store.h"
#include "vmm/result.h"

namespace vicvmm::image {

struct UnpackStats {
  uint64_t bytes = 0;    // file data written, summed over layers
  uint64_t entries = 0;  // archive entries seen, summed over layers
};

// What one image's layers share while they are applied bottom first.
struct UnpackState {
  UnpackStats stats;
  // Symlinks the layers created whose relative target climbs above the
  // root ("evil -> ../../../etc"); no later entry may go through them.
  std::set<std::string> escaping_symlinks;
};

struct LayerSource {
  std::string path;    // the blob file (tar, possibly compressed)
  std::string digest;  // expected "sha256:<hex>" of the file; "" = not checked
  std::string name;    // for messages, e.g. "layer sha256:..."
};

// Applies one layer under `root_dirfd`. Errors name the layer and the entry;
// on error the tree is left half-applied: the caller discards it.
Result<void> apply_layer(int root_dirfd, const LayerSource& layer, const Limits& limits, UnpackState& state);

}  // namespace vicvmm::image
