// Helpers shared by the fuzz targets: checks that abort with a message (the
// crash libFuzzer records, in the libFuzzer build and in the replay build
// alike), a reader for the control bytes a target takes from the front of
// its input, and feed plans (where a byte stream is cut into reads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

namespace rg::fuzz {

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, expr);
  std::fflush(stderr);
  std::abort();
}

}  // namespace rg::fuzz

// A property of the code under test; on failure the input is a finding.
#define FUZZ_CHECK(cond) ((cond) ? static_cast<void>(0) : ::rg::fuzz::check_failed(#cond, __FILE__, __LINE__))

namespace rg::fuzz {

using Bytes = std::vector<std::uint8_t>;

inline std::string_view chars(std::span<const std::uint8_t> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::span<const std::uint8_t> bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Takes control bytes from the front of the input; past its end every byte
// reads as 0, so any input is usable.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) noexcept : rest_(data, size) {}

  std::uint8_t byte() noexcept {
    if (rest_.empty()) return 0;
    const std::uint8_t b = rest_[0];
    rest_ = rest_.subspan(1);
    return b;
  }
  std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(byte() << 8 | byte()); }
  std::uint64_t u64() noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | byte();
    return v;
  }
  std::span<const std::uint8_t> take(std::size_t n) noexcept {
    n = n < rest_.size() ? n : rest_.size();
    const std::span<const std::uint8_t> out = rest_.first(n);
    rest_ = rest_.subspan(n);
    return out;
  }
  [[nodiscard]] std::span<const std::uint8_t> rest() const noexcept { return rest_; }
  [[nodiscard]] bool empty() const noexcept { return rest_.empty(); }

 private:
  std::span<const std::uint8_t> rest_;
};

// Where a stream of `total` bytes is cut into reads: the read sizes cycle
// through `plan`, one byte each.  A byte below 0xC0 is a read of that many
// bytes (0 is an empty read); from 0xC0 up, (b - 0xBF) * 128 bytes, up to
// 8 KiB.  At most `empty_max` empty reads, and at most 4096 reads in all (the
// rest goes in the last), so every plan ends.
inline std::vector<std::size_t> cuts(std::span<const std::uint8_t> plan, std::size_t total,
                                     std::size_t empty_max = 8) {
  std::vector<std::size_t> out;
  if (plan.empty()) return out;
  std::size_t at = 0;
  std::size_t empties = 0;
  for (std::size_t i = 0; at < total && out.size() < 4096; ++i) {
    const std::uint8_t b = plan[i % plan.size()];
    std::size_t n = b < 0xC0 ? b : std::size_t{b - 0xBFu} * 128;
    if (n == 0 && ++empties > empty_max) n = 1;
    at = n < total - at ? at + n : total;
    out.push_back(at);
  }
  if (!out.empty() && out.back() == total) out.pop_back();  // the last read runs to the end anyway
  return out;
}

// Every read of `stream` cut at `cut_points` (the last one runs to the end).
template <typename F>
void for_each_read(std::span<const std::uint8_t> stream, const std::vector<std::size_t>& cut_points, F&& f) {
  std::size_t from = 0;
  for (std::size_t i = 0; i <= cut_points.size(); ++i) {
    const std::size_t to = i < cut_points.size() ? cut_points[i] : stream.size();
    if (!f(stream.subspan(from, to - from), from)) return;
    from = to;
  }
}

inline std::vector<std::size_t> byte_by_byte(std::size_t total) {
  std::vector<std::size_t> out;
  for (std::size_t k = 1; k < total; ++k) out.push_back(k);
  return out;
}

}  // namespace rg::fuzz
