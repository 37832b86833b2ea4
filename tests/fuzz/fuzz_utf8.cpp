// proto/utf8.h: Utf8Validator and utf8_valid, against a plain decoder
// written from RFC 3629 (Unicode Table 3-7).
//
// Input: [flags] [plan bytes...] [text...]
//   flags bits 0-2  how many plan bytes follow (read sizes)
// The validator, fed whole, in the plan's reads and byte by byte, must fail
// in the read that brings the first byte no valid text can have there, and
// end complete exactly when the text is valid.
#include <cstdint>
#include <optional>

#include "fuzz_support.h"
#include "proto/utf8.h"

namespace {

// Where the first byte that cannot continue valid UTF-8 is, if any; and
// whether the text ends in the middle of a code point.
struct Reference {
  std::optional<std::size_t> bad_at;
  bool truncated = false;
};

Reference reference(std::span<const std::uint8_t> s) {
  Reference r;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::uint8_t b = s[i];
    std::size_t need = 0;
    std::uint8_t lo = 0x80, hi = 0xBF;
    if (b < 0x80) need = 0;
    else if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) need = 2, lo = 0xA0;
    else if (b == 0xED) need = 2, hi = 0x9F;  // no surrogates
    else if (b >= 0xE1 && b <= 0xEF) need = 2;
    else if (b == 0xF0) need = 3, lo = 0x90;
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) need = 3, hi = 0x8F;  // up to U+10FFFF
    else {
      r.bad_at = i;
      return r;
    }
    for (std::size_t k = 1; k <= need; ++k) {
      if (i + k == s.size()) {
        r.truncated = true;
        return r;
      }
      const std::uint8_t c = s[i + k];
      if (c < lo || c > hi) {
        r.bad_at = i + k;
        return r;
      }
      lo = 0x80, hi = 0xBF;
    }
    i += need + 1;
  }
  return r;
}

void run(std::span<const std::uint8_t> s, const Reference& ref, const std::vector<std::size_t>& cut_points) {
  rg::proto::Utf8Validator v;
  bool failed = false;
  rg::fuzz::for_each_read(s, cut_points, [&](std::span<const std::uint8_t> read, std::size_t from) {
    const bool ok = v.feed(read);
    const bool bad_here = ref.bad_at && *ref.bad_at < from + read.size();
    FUZZ_CHECK(ok == !bad_here);
    FUZZ_CHECK(v.failed() == bad_here);
    failed = !ok;
    return true;
  });
  FUZZ_CHECK(failed == ref.bad_at.has_value());
  FUZZ_CHECK(v.complete() == (!ref.bad_at && !ref.truncated));
  v.reset();
  FUZZ_CHECK(v.complete() && !v.failed());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::span<const std::uint8_t> plan = in.take(flags & 7);
  const std::span<const std::uint8_t> text = in.rest();
  const Reference ref = reference(text);
  FUZZ_CHECK(rg::proto::utf8_valid(text) == (!ref.bad_at && !ref.truncated));
  run(text, ref, {});
  run(text, ref, rg::fuzz::cuts(plan, text.size()));
  run(text, ref, rg::fuzz::byte_by_byte(text.size()));
  return 0;
}
