// The monotonic clock, in the units its callers want.  Every timeout,
// deadline and latency in ringgate is CLOCK_MONOTONIC; wall-clock time
// (CLOCK_REALTIME) is only for what leaves the process (JWT expiry, ids).
#pragma once


#include <ctime>
#include <cstdint>

namespace rg::base {

[[nodiscard]] inline std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<std::uint64_t>(ts.tv_nsec);
}

[[nodiscard]] inline std::uint64_t monotonic_ms() noexcept { return monotonic_ns() / 1'000'000; }

}  // namespace rg::base
