// Utf8Validator: a table of RFC 3629 / Unicode Table 3-7 edge cases, each fed
// whole, split in two at every byte boundary, and byte by byte; plus sweeps
// against an independent, value-based reference decoder.

#include "proto/utf8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using rg::proto::Utf8Validator;
using rg::proto::utf8_valid;
using rg::test::Bytes;
using rg::test::hex;

enum class Expect { valid, invalid, incomplete };

const char* name_of(Expect e) {
  switch (e) {
    case Expect::valid: return "valid";
    case Expect::invalid: return "invalid";
    case Expect::incomplete: return "incomplete";
  }
  return "?";
}

struct Utf8Case {
  std::string name;
  Bytes input;
  Expect expect;
};

std::ostream& operator<<(std::ostream& os, const Utf8Case& c) {
  return os << c.name << " [" << hex(c.input) << "] -> " << name_of(c.expect);
}

Expect classify(const Utf8Validator& v) {
  if (v.failed()) return Expect::invalid;
  return v.complete() ? Expect::valid : Expect::incomplete;
}

// Feeds `input` in the pieces `cuts` describes (cut offsets, ascending) and
// returns the final classification.  Checks that feed() returns false exactly
// from the first failing piece on.
Expect feed_pieces(const Bytes& input, const std::vector<std::size_t>& cuts) {
  Utf8Validator v;
  std::size_t from = 0;
  bool failed = false;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : input.size();
    const bool ok = v.feed(std::span(input).subspan(from, to - from));
    EXPECT_EQ(ok, !v.failed()) << "feed() result disagrees with failed() at piece " << i;
    if (failed) {
      EXPECT_FALSE(ok) << "validator recovered after failing";
    }
    failed = failed || !ok;
    from = to;
  }
  return classify(v);
}

void check_all_splits(const Bytes& input, Expect expect) {
  // Whole.
  EXPECT_EQ(feed_pieces(input, {}), expect) << "whole";
  EXPECT_EQ(utf8_valid(input), expect == Expect::valid) << "utf8_valid";
  // Two feeds, split at every boundary (including empty first/second halves).
  for (std::size_t k = 0; k <= input.size(); ++k) EXPECT_EQ(feed_pieces(input, {k}), expect) << "split at " << k;
  // Byte by byte.
  std::vector<std::size_t> every;
  for (std::size_t k = 1; k < input.size(); ++k) every.push_back(k);
  EXPECT_EQ(feed_pieces(input, every), expect) << "byte by byte";
}

Bytes b(std::initializer_list<int> v) {
  Bytes out;
  for (int x : v) out.push_back(static_cast<std::uint8_t>(x));
  return out;
}

Bytes ascii_run(std::size_t n) {
  Bytes out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>('a' + i % 26));
  return out;
}

Bytes cat(Bytes a, const Bytes& c) {
  a.insert(a.end(), c.begin(), c.end());
  return a;
}

Bytes encode_cp(std::uint32_t cp) {
  if (cp < 0x80) return b({static_cast<int>(cp)});
  if (cp < 0x800) return b({0xC0 | static_cast<int>(cp >> 6), 0x80 | static_cast<int>(cp & 0x3F)});
  if (cp < 0x10000)
    return b({0xE0 | static_cast<int>(cp >> 12), 0x80 | static_cast<int>((cp >> 6) & 0x3F),
              0x80 | static_cast<int>(cp & 0x3F)});
  return b({0xF0 | static_cast<int>(cp >> 18), 0x80 | static_cast<int>((cp >> 12) & 0x3F),
            0x80 | static_cast<int>((cp >> 6) & 0x3F), 0x80 | static_cast<int>(cp & 0x3F)});
}

std::vector<Utf8Case> table_cases() {
  std::vector<Utf8Case> c = {
      // valid
      {"empty", {}, Expect::valid},
      {"ascii", rg::test::bytes("Hello, world"), Expect::valid},
      {"nul", b({0x00}), Expect::valid},
      {"del_7f", b({0x7F}), Expect::valid},
      {"u0080_min2", b({0xC2, 0x80}), Expect::valid},
      {"u07ff_max2", b({0xDF, 0xBF}), Expect::valid},
      {"u0800_min3", b({0xE0, 0xA0, 0x80}), Expect::valid},
      {"ud7ff_below_surrogates", b({0xED, 0x9F, 0xBF}), Expect::valid},
      {"ue000_above_surrogates", b({0xEE, 0x80, 0x80}), Expect::valid},
      {"uffff_max3", b({0xEF, 0xBF, 0xBF}), Expect::valid},
      {"ufffe_noncharacter", b({0xEF, 0xBF, 0xBE}), Expect::valid},
      {"bom", b({0xEF, 0xBB, 0xBF}), Expect::valid},
      {"u10000_min4", b({0xF0, 0x90, 0x80, 0x80}), Expect::valid},
      {"u3ffff_f0_max", b({0xF0, 0xBF, 0xBF, 0xBF}), Expect::valid},
      {"u40000_f1_min", b({0xF1, 0x80, 0x80, 0x80}), Expect::valid},
      {"ufffff_f3_max", b({0xF3, 0xBF, 0xBF, 0xBF}), Expect::valid},
      {"u10ffff_max4", b({0xF4, 0x8F, 0xBF, 0xBF}), Expect::valid},
      {"kosme", b({0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5}), Expect::valid},
      {"mixed", rg::test::bytes("a\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 z"), Expect::valid},
      {"emoji_run", rg::test::bytes("\xF0\x9F\x98\x80\xF0\x9F\x98\x81\xF0\x9F\x98\x82\xF0\x9F\x98\x83"),
       Expect::valid},
      // lone continuation bytes and impossible leads
      {"lone_cont_80", b({0x80}), Expect::invalid},
      {"lone_cont_bf", b({0xBF}), Expect::invalid},
      {"ascii_then_cont", b({'a', 0x80}), Expect::invalid},
      {"two_byte_then_extra_cont", b({0xC2, 0x80, 0x80}), Expect::invalid},
      {"lead_c0", b({0xC0}), Expect::invalid},
      {"lead_c1", b({0xC1}), Expect::invalid},
      {"lead_f5", b({0xF5}), Expect::invalid},
      {"lead_f7", b({0xF7}), Expect::invalid},
      {"lead_f8", b({0xF8}), Expect::invalid},
      {"lead_fe", b({0xFE}), Expect::invalid},
      {"lead_ff", b({0xFF}), Expect::invalid},
      // overlongs
      {"overlong_c0_80", b({0xC0, 0x80}), Expect::invalid},
      {"overlong_c0_af_slash", b({0xC0, 0xAF}), Expect::invalid},
      {"overlong_c1_bf", b({0xC1, 0xBF}), Expect::invalid},
      {"overlong_e0_80_80", b({0xE0, 0x80, 0x80}), Expect::invalid},
      {"overlong_e0_9f_bf", b({0xE0, 0x9F, 0xBF}), Expect::invalid},
      {"overlong_f0_80_80_80", b({0xF0, 0x80, 0x80, 0x80}), Expect::invalid},
      {"overlong_f0_8f_bf_bf", b({0xF0, 0x8F, 0xBF, 0xBF}), Expect::invalid},
      {"overlong_f8_5byte", b({0xF8, 0x88, 0x80, 0x80, 0x80}), Expect::invalid},
      // surrogates
      {"surrogate_ed_a0_80", b({0xED, 0xA0, 0x80}), Expect::invalid},
      {"surrogate_ed_bf_bf", b({0xED, 0xBF, 0xBF}), Expect::invalid},
      {"surrogate_pair", b({0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80}), Expect::invalid},
      // above U+10FFFF
      {"above_max_f4_90", b({0xF4, 0x90, 0x80, 0x80}), Expect::invalid},
      {"above_max_f4_bf", b({0xF4, 0xBF, 0xBF, 0xBF}), Expect::invalid},
      {"above_max_f5", b({0xF5, 0x80, 0x80, 0x80}), Expect::invalid},
      // bad continuation inside a sequence
      {"two_byte_ascii_cont", b({0xC2, 'a'}), Expect::invalid},
      {"three_byte_bad_third", b({0xE2, 0x82, 0x41}), Expect::invalid},
      {"three_byte_c0_third", b({0xE2, 0x82, 0xC0}), Expect::invalid},
      {"four_byte_bad_fourth", b({0xF0, 0x9F, 0x98, 0x28}), Expect::invalid},
      {"lead_after_lead", b({0xE2, 0xC2, 0x80}), Expect::invalid},
      {"invalid_then_valid", b({0xFF, 'a', 'b'}), Expect::invalid},
      // truncated at the end: a valid prefix, not complete
      {"trunc_2_of_2", b({0xC3}), Expect::incomplete},
      {"trunc_1_of_3", b({0xE2}), Expect::incomplete},
      {"trunc_2_of_3", b({0xE2, 0x82}), Expect::incomplete},
      {"trunc_e0_a0", b({0xE0, 0xA0}), Expect::incomplete},
      {"trunc_ed_9f", b({0xED, 0x9F}), Expect::incomplete},
      {"trunc_1_of_4", b({0xF0}), Expect::incomplete},
      {"trunc_2_of_4", b({0xF0, 0x9F}), Expect::incomplete},
      {"trunc_3_of_4", b({0xF0, 0x9F, 0x98}), Expect::incomplete},
      {"trunc_f4_8f_bf", b({0xF4, 0x8F, 0xBF}), Expect::incomplete},
      {"ascii_then_trunc", rg::test::bytes("hello wonderful world \xE2\x82"), Expect::incomplete},
  };
  // ASCII runs longer than the 8-byte fast path with an invalid byte at every
  // position: the word skip must neither jump over nor misplace it.
  for (std::size_t pos = 0; pos < 18; ++pos) {
    for (int bad : {0x80, 0xBF, 0xC0, 0xFF}) {
      Bytes in = ascii_run(18);
      in[pos] = static_cast<std::uint8_t>(bad);
      c.push_back({"ascii18_bad" + std::to_string(bad) + "_at" + std::to_string(pos), in, Expect::invalid});
    }
    // A valid 2/3/4-byte sequence at every position of a long ASCII run.
    for (std::uint32_t cp : {0xE9u, 0x20ACu, 0x1F600u}) {
      Bytes in = ascii_run(pos);
      in = cat(cat(in, encode_cp(cp)), ascii_run(20 - pos));
      c.push_back({"ascii_cp" + std::to_string(cp) + "_at" + std::to_string(pos), in, Expect::valid});
    }
    // A run ending in a truncated sequence.
    c.push_back({"ascii" + std::to_string(pos + 9) + "_trunc", cat(ascii_run(pos + 9), b({0xF0, 0x9F})),
                 Expect::incomplete});
  }
  return c;
}

class Utf8Table : public ::testing::TestWithParam<Utf8Case> {};

TEST_P(Utf8Table, WholeSplitAndByteByByteAgree) {
  const Utf8Case& c = GetParam();
  SCOPED_TRACE(::testing::PrintToString(c));
  check_all_splits(c.input, c.expect);
}

INSTANTIATE_TEST_SUITE_P(Cases, Utf8Table, ::testing::ValuesIn(table_cases()),
                         [](const ::testing::TestParamInfo<Utf8Case>& info) { return info.param.name; });

// ------------------------------------------------------------------ reference
//
// An independent formulation: decode by code point value.  A partial sequence
// is a viable prefix when the range of values its completions can reach
// meets the legal range for its length (excluding the surrogate block).

struct Reference {
  int need = 0;       // continuation bytes still expected
  int total = 0;      // continuation bytes of the current sequence
  std::uint32_t value = 0;
  bool failed = false;

  static bool viable(std::uint32_t lo, std::uint32_t hi, int total) {
    std::uint32_t min = 0;
    std::uint32_t max = 0;
    switch (total) {
      case 1: min = 0x80; max = 0x7FF; break;
      case 2: min = 0x800; max = 0xFFFF; break;
      case 3: min = 0x10000; max = 0x10FFFF; break;
      default: return false;
    }
    lo = std::max(lo, min);
    hi = std::min(hi, max);
    if (lo > hi) return false;
    // Only surrogates left?
    return !(lo >= 0xD800 && hi <= 0xDFFF);
  }

  bool feed(std::uint8_t c) {
    if (failed) return false;
    if (need == 0) {
      if (c < 0x80) return true;
      if ((c & 0xE0) == 0xC0) { total = 1; value = c & 0x1F; }
      else if ((c & 0xF0) == 0xE0) { total = 2; value = c & 0x0F; }
      else if ((c & 0xF8) == 0xF0) { total = 3; value = c & 0x07; }
      else return !(failed = true);
      need = total;
    } else {
      if ((c & 0xC0) != 0x80) return !(failed = true);
      value = (value << 6) | (c & 0x3F);
      --need;
    }
    const std::uint32_t lo = value << (6 * need);
    const std::uint32_t hi = lo | ((1u << (6 * need)) - 1);
    if (!viable(lo, hi, total)) failed = true;
    return !failed;
  }

  Expect result() const {
    if (failed) return Expect::invalid;
    return need == 0 ? Expect::valid : Expect::incomplete;
  }
};

// Byte by byte against the reference: the validator must fail at exactly the
// first byte after which no valid completion exists.
void check_against_reference(const Bytes& in) {
  Reference ref;
  Utf8Validator v;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const bool want = ref.feed(in[i]);
    ASSERT_EQ(v.feed(std::span(in).subspan(i, 1)), want) << "at byte " << i << " of [" << hex(in) << "]";
  }
  ASSERT_EQ(classify(v), ref.result()) << "[" << hex(in) << "]";
  // Whole-buffer feeding (word-at-a-time path) must agree too.
  Utf8Validator w;
  (void)w.feed(in);
  ASSERT_EQ(classify(w), ref.result()) << "whole [" << hex(in) << "]";
}

TEST(Utf8Reference, EveryCodePointEncodesValidAndSurrogatesInvalid) {
  for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    const Bytes e = encode_cp(cp);
    const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    ASSERT_EQ(utf8_valid(e), !surrogate) << "U+" << std::hex << cp;
  }
}

TEST(Utf8Reference, AllOneAndTwoByteSequences) {
  for (int x = 0; x < 256; ++x) check_against_reference(b({x}));
  for (int x = 0; x < 256; ++x)
    for (int y = 0; y < 256; ++y) {
      const Bytes in = b({x, y});
      Reference ref;
      for (auto c : in) ref.feed(c);
      Utf8Validator v;
      (void)v.feed(in);
      ASSERT_EQ(classify(v), ref.result()) << hex(in);
    }
}

TEST(Utf8Reference, ThreeAndFourByteBoundaryBytes) {
  // Every lead byte against the continuation bytes at range boundaries.
  const int edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xFF};
  for (int lead = 0xC0; lead <= 0xFF; ++lead)
    for (int x : edges)
      for (int y : edges) {
        check_against_reference(b({lead, x, y}));
        for (int z : edges) check_against_reference(b({lead, x, y, z}));
      }
}

TEST(Utf8Reference, RandomMixedStreams) {
  std::mt19937 rng(6455);
  const int interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                             0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes in;
    const int pieces = 1 + static_cast<int>(rng() % 12);
    for (int p = 0; p < pieces; ++p) {
      switch (rng() % 4) {
        case 0: in = cat(in, ascii_run(rng() % 20)); break;
        case 1: {
          std::uint32_t cp = rng() % 0x110000;
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
          in = cat(in, encode_cp(cp));
          break;
        }
        case 2: in.push_back(static_cast<std::uint8_t>(interesting[rng() % std::size(interesting)])); break;
        default: in.push_back(static_cast<std::uint8_t>(rng())); break;
      }
    }
    check_against_reference(in);
    // And split in two at a random point: same verdict as whole.
    Reference ref;
    for (auto c : in) ref.feed(c);
    const std::size_t k = in.empty() ? 0 : rng() % (in.size() + 1);
    ASSERT_EQ(feed_pieces(in, {k}), ref.result()) << hex(in) << " split at " << k;
  }
}

TEST(Utf8Validator, StaysFailedAndResets) {
  Utf8Validator v;
  EXPECT_TRUE(v.complete());
  EXPECT_FALSE(v.feed(b({0xFF})));
  EXPECT_TRUE(v.failed());
  EXPECT_FALSE(v.feed(rg::test::bytes("plain ascii")));
  EXPECT_FALSE(v.complete());
  v.reset();
  EXPECT_FALSE(v.failed());
  EXPECT_TRUE(v.complete());
  EXPECT_TRUE(v.feed(b({0xE2, 0x82})));
  EXPECT_FALSE(v.complete());
  EXPECT_TRUE(v.feed(b({0xAC})));
  EXPECT_TRUE(v.complete());
  // Empty feeds change nothing.
  EXPECT_TRUE(v.feed({}));
  EXPECT_TRUE(v.complete());
}

TEST(Utf8Validator, LargeAsciiBufferWithTrailingError) {
  Bytes in = ascii_run(64 * 1024);
  EXPECT_TRUE(utf8_valid(in));
  in.back() = 0x80;
  EXPECT_FALSE(utf8_valid(in));
  in.back() = 0xC3;
  Utf8Validator v;
  EXPECT_TRUE(v.feed(in));
  EXPECT_FALSE(v.complete());
}

}  // namespace
