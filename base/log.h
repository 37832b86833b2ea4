// Logging: one line per event on stderr, with a level and the worker id.
// Errors that can repeat per packet go through RateLimited so that a flood of
// bad input costs a counter, not a disk.
#pragma once

#include <absl/strings/str_format.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace rg::base::log {

enum class Level : std::uint8_t { debug, info, warn, error };

void set_level(Level level) noexcept;
[[nodiscard]] bool enabled(Level level) noexcept;
[[nodiscard]] bool parse_level(const std::string& text, Level& level) noexcept;
void write(Level level, const std::string& line) noexcept;
// The same, naming another source than "ringgate" ("WARN preflight: ...").
void write_from(Level level, const char* source, const std::string& line) noexcept;

// Allows at most `burst` lines per `period_ms`; counts what it suppresses and
// reports the count with the next line it lets through.  One per call site,
// one writer thread (each worker keeps its own).
class RateLimited {
 public:
  explicit RateLimited(std::uint32_t burst = 5, std::uint64_t period_ms = 10'000) noexcept
      : burst_(burst), period_ms_(period_ms) {}
  // Returns true if a line may be written now; `suppressed` gets how many
  // were dropped since the last line that went out.
  bool allow(std::uint64_t now_ms, std::uint64_t& suppressed) noexcept;

 private:
  std::uint32_t burst_;
  std::uint64_t period_ms_;
  std::uint64_t window_start_ms_ = 0;
  std::uint32_t used_ = 0;
  std::uint64_t suppressed_ = 0;
};

template <typename... Args>
void logf(Level level, const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (enabled(level)) write(level, absl::StrFormat(format, args...));
}

}  // namespace rg::base::log

#define RG_LOG(level, ...) ::rg::base::log::logf(::rg::base::log::Level::level, __VA_ARGS__)
