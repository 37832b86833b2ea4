// The publish API's brake on wrong bearer tokens, per client address: the
// first failures_max wrong (or missing) tokens within window_ms get an
// immediate 401; each further one in that window is answered 429 with
// Retry-After (the seconds left in the window), held back delay_ms, and the
// connection closed.  A right token is never held or refused, so a guesser
// cannot lock out a publisher that shares its address (a NAT, localhost);
// it only gets one verdict per connection per delay_ms, so its guesses are
// bounded by admin_per_ip_limit / delay_ms per address.
//
// Memory is bounded: addresses_max entries, the one whose window began
// first replaced when a new address fails and the table is full.  One
// writer: the admin thread.
#pragma once

#include <array>
#include <cstdint>

#include "server/peer_address.h"

namespace rg::server {

class AuthThrottle {
 public:
  static constexpr std::size_t addresses_max = 256;  // 256 x 32 B: 8 KiB
  static constexpr std::uint32_t failures_max = 5;   // immediate 401s per address and window
  static constexpr std::uint64_t window_ms = 60'000;
  static constexpr std::uint64_t delay_ms = 1'000;   // how long a throttled answer is held

  struct Verdict {
    bool throttled = false;         // over failures_max in the window: 429, held delay_ms
    std::uint32_t retry_after_s = 0;  // with throttled: until the window ends, at least 1
  };

  // Counts a wrong or missing token from `peer` at `now_ms`.
  [[nodiscard]] Verdict fail(const PeerAddress& peer, std::uint64_t now_ms) noexcept;

  // Addresses with an entry (for tests).
  [[nodiscard]] std::size_t tracked() const noexcept;

 private:
  struct Entry {
    PeerAddress peer;
    std::uint64_t window_start_ms = 0;
    std::uint32_t failures = 0;  // 0: the entry is free
  };
  std::array<Entry, addresses_max> entries_{};
};

}  // namespace rg::server
