// The per-address brake on wrong bearer tokens (control/auth_throttle.h).
#include "control/auth_throttle.h"

namespace rg::server {

AuthThrottle::Verdict AuthThrottle::fail(const PeerAddress& peer, std::uint64_t now_ms) noexcept {
  // A linear scan of 256 entries, only on the failure path: cheaper than a
  // hash map's upkeep, and the table cannot grow.
  Entry* found = nullptr;
  Entry* oldest = &entries_[0];
  for (Entry& e : entries_) {
    if (e.failures != 0 && e.peer == peer) {
      found = &e;
      break;
    }
    if (e.failures == 0 || (oldest->failures != 0 && e.window_start_ms < oldest->window_start_ms)) oldest = &e;
  }
  if (found == nullptr || now_ms - found->window_start_ms >= window_ms) {
    Entry& e = found ? *found : *oldest;
    e = Entry{peer, now_ms, 1};
    return {};
  }
  ++found->failures;
  if (found->failures <= failures_max) return {};
  const std::uint64_t left_ms = found->window_start_ms + window_ms - now_ms;
  return {true, static_cast<std::uint32_t>((left_ms + 999) / 1000)};
}

std::size_t AuthThrottle::tracked() const noexcept {
  std::size_t n = 0;
  for (const Entry& e : entries_) n += e.failures != 0;
  return n;
}

}  // namespace rg::server
