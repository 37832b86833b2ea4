// Incremental UTF-8 validation (RFC 3629, Unicode Table 3-7).
//
// A text message may arrive as many fragments, and a code point may be split
// between two of them, so the validator carries its state across calls.  The
// whole state is two bytes, cheap enough to live inside a per-message session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rg::proto {

class Utf8Validator {
 public:
  // Feeds the next bytes.  Returns false as soon as the bytes so far cannot be
  // the prefix of valid UTF-8; after that the validator stays failed.
  [[nodiscard]] bool feed(std::span<const std::uint8_t> bytes) noexcept;

  // True when everything fed so far is complete, valid UTF-8 (no code point
  // left half-finished).  Call at the end of a message.
  [[nodiscard]] bool complete() const noexcept { return !failed_ && need_ == 0; }
  [[nodiscard]] bool failed() const noexcept { return failed_; }

  void reset() noexcept { *this = Utf8Validator{}; }

 private:
  std::uint8_t need_ = 0;     // continuation bytes still expected
  std::uint8_t lo_ = 0x80;    // bounds for the *next* continuation byte; the
  std::uint8_t hi_ = 0xBF;    // first one is narrowed to reject overlongs/surrogates
  bool failed_ = false;
};

// One-shot convenience for whole buffers.
[[nodiscard]] bool utf8_valid(std::span<const std::uint8_t> bytes) noexcept;

}  // namespace rg::proto
