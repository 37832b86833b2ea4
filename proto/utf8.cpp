#include "proto/utf8.h"

#include <cstring>

namespace rg::proto {

namespace {

// True when all 8 bytes at p are ASCII: the common case for chat and JSON, so
// it is worth skipping a word at a time.
inline bool ascii8(const std::uint8_t* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return (w & 0x8080808080808080ull) == 0;
}

}  // namespace

bool Utf8Validator::feed(std::span<const std::uint8_t> bytes) noexcept {
  if (failed_) return false;
  const std::uint8_t* p = bytes.data();
  const std::uint8_t* const end = p + bytes.size();
  while (p < end) {
    if (need_ == 0) {
      while (end - p >= 8 && ascii8(p)) p += 8;
      if (p == end) break;
      const std::uint8_t b = *p++;
      if (b < 0x80) continue;
      // Lead byte: how many continuation bytes follow, and the legal range of
      // the first one (Unicode Table 3-7 rules out overlongs, surrogates and
      // code points above U+10FFFF right here).
      lo_ = 0x80;
      hi_ = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        need_ = 1;
      } else if (b == 0xE0) {
        need_ = 2;
        lo_ = 0xA0;
      } else if (b >= 0xE1 && b <= 0xEC) {
        need_ = 2;
      } else if (b == 0xED) {
        need_ = 2;
        hi_ = 0x9F;  // U+D800..U+DFFF are surrogates
      } else if (b >= 0xEE && b <= 0xEF) {
        need_ = 2;
      } else if (b == 0xF0) {
        need_ = 3;
        lo_ = 0x90;
      } else if (b >= 0xF1 && b <= 0xF3) {
        need_ = 3;
      } else if (b == 0xF4) {
        need_ = 3;
        hi_ = 0x8F;  // nothing above U+10FFFF
      } else {
        failed_ = true;  // 0x80..0xC1 or 0xF5..0xFF can never lead
        return false;
      }
      continue;
    }
    const std::uint8_t b = *p++;
    if (b < lo_ || b > hi_) {
      failed_ = true;
      return false;
    }
    --need_;
    lo_ = 0x80;
    hi_ = 0xBF;
  }
  return true;
}

bool utf8_valid(std::span<const std::uint8_t> bytes) noexcept {
  Utf8Validator v;
  return v.feed(bytes) && v.complete();
}

}  // namespace rg::proto
