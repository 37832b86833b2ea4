// The one place a shipped invariant fails: see base/invariant.h.
#include "base/invariant.h"

#include <cstdio>
#include <cstdlib>

namespace rg::base {

void assert_failed(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "FATAL ringgate: invariant failed: %s (%s:%d)\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace rg::base
