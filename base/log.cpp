// The log (base/log.h): leveled lines to stderr, and rate limiting for lines a flood could repeat.
#include "base/log.h"

#include <unistd.h>

#include <ctime>
#include <cstdio>

namespace rg::base::log {

namespace {
std::atomic<Level> g_level{Level::info};
const char* name(Level l) {
  switch (l) {
    case Level::debug: return "DEBUG";
    case Level::info: return "INFO";
    case Level::warn: return "WARN";
    case Level::error: return "ERROR";
  }
  return "?";
}
}  // namespace

void set_level(Level level) noexcept { g_level.store(level, std::memory_order_relaxed); }
bool enabled(Level level) noexcept { return level >= g_level.load(std::memory_order_relaxed); }

bool parse_level(const std::string& text, Level& level) noexcept {
  if (text == "debug") level = Level::debug;
  else if (text == "info") level = Level::info;
  else if (text == "warn") level = Level::warn;
  else if (text == "error") level = Level::error;
  else return false;
  return true;
}

void write(Level level, const std::string& line) noexcept { write_from(level, "ringgate", line); }

void write_from(Level level, const char* source, const std::string& line) noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
  // One write(2) per line keeps lines from different workers whole.
  const std::string out = absl::StrFormat("%s.%03dZ %s %s: %s\n", stamp, static_cast<int>(ts.tv_nsec / 1000000),
                                          name(level), source, line);
  const ssize_t rc = ::write(STDERR_FILENO, out.data(), out.size());
  (void)rc;
}

bool RateLimited::allow(std::uint64_t now_ms, std::uint64_t& suppressed) noexcept {
  if (now_ms - window_start_ms_ >= period_ms_) {
    window_start_ms_ = now_ms;
    used_ = 0;
  }
  if (used_ < burst_) {
    ++used_;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }
  ++suppressed_;
  return false;
}

}  // namespace rg::base::log
