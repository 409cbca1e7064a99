// Shared by the libFuzzer targets: a violated invariant stops the run with
// a trap, which libFuzzer reports as a crash and saves the input for.
#pragma once

#define FUZZ_CHECK(cond)             \
  do {                               \
    if (!(cond)) __builtin_trap();   \
  } while (0)
