// JWT HS256: base64url, valid tokens, every rejection (expired, bad signature,
// alg none / wrong alg, malformed), and the channel claim.

#include "proto/jwt.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace {

using namespace rg::proto::jwt;
using rg::test::bytes;

const rg::test::Bytes key = bytes("secret-key-for-tests");
constexpr std::int64_t now = 1'700'000'000;
constexpr std::string_view hs256 = R"({"alg":"HS256","typ":"JWT"})";

std::string payload(std::string_view extra = R"(,"channels":["news.*","chat"])") {
  return R"({"sub":"alice","exp":1700000600)" + std::string(extra) + "}";
}

// ------------------------------------------------------------------ base64url

struct B64Case {
  std::string text;
  std::string encoded;
};

class Base64Url : public ::testing::TestWithParam<B64Case> {};

TEST_P(Base64Url, RoundTrip) {
  EXPECT_EQ(base64url_encode(bytes(GetParam().text)), GetParam().encoded);
  std::vector<std::uint8_t> out(64);
  std::size_t n = 99;
  ASSERT_TRUE(base64url_decode(GetParam().encoded, out, n));
  EXPECT_EQ(std::string(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), GetParam().text);
}

INSTANTIATE_TEST_SUITE_P(Table, Base64Url,
                         ::testing::Values(B64Case{"", ""}, B64Case{"f", "Zg"}, B64Case{"fo", "Zm8"},
                                           B64Case{"foo", "Zm9v"}, B64Case{"foob", "Zm9vYg"},
                                           B64Case{"\xFB\xFF", "-_8"}, B64Case{"\xFF\xFF\xFE", "___-"}));

TEST(Base64Url, Rejects) {
  std::vector<std::uint8_t> out(64);
  std::size_t n = 0;
  for (const char* bad : {"Zg==", "Zg=", "Z", "Zm9vY", "Zh", "Zm9", "+/8", "Zm 9v", "Zm9v\n", "Z!"})
    EXPECT_FALSE(base64url_decode(bad, out, n)) << bad;  // Zh, Zm9: non-zero unused bits
  std::array<std::uint8_t, 2> small{};
  EXPECT_FALSE(base64url_decode("Zm9v", small, n));
  EXPECT_TRUE(base64url_decode("Zm8", small, n));
}

// ------------------------------------------------------------------ tokens

struct TokenCase {
  std::string name;
  std::string token;
  Error error;
  std::int64_t now_s = now;
};

void PrintTo(const TokenCase& c, std::ostream* os) { *os << c.name; }

class Tokens : public ::testing::TestWithParam<TokenCase> {};

TEST_P(Tokens, Verify) {
  const Verifier v(key);
  ASSERT_TRUE(v.ready());
  const Result r = v.verify(GetParam().token, GetParam().now_s);
  EXPECT_EQ(error_text(r.error), error_text(GetParam().error)) << GetParam().token;
}

std::string sign(std::string_view header, std::string_view body) { return sign_hs256(header, body, key); }

std::string b64(std::string_view s) { return base64url_encode(bytes(s)); }

std::string flip_last_signature_char(std::string t) {
  t.back() = t.back() == 'A' ? 'Q' : 'A';  // keeps the unused bits zero
  return t;
}

std::vector<TokenCase> token_cases() {
  const std::string good = sign(hs256, payload());
  const std::size_t dot2 = good.rfind('.');
  const std::string signature = good.substr(dot2 + 1);
  return {
      {"valid", good, Error::none},
      {"valid_no_typ", sign(R"({"alg":"HS256"})", payload()), Error::none},
      {"valid_no_channels", sign(hs256, payload("")), Error::none},
      {"valid_nbf_past", sign(hs256, payload(R"(,"nbf":1600000000)")), Error::none},
      {"valid_fractional_exp", sign(hs256, R"({"sub":"a","exp":1700000001.5})"), Error::none},
      {"valid_one_second_left", good, Error::none, 1700000599},
      // time
      {"expired_exactly", good, Error::expired, 1700000600},
      {"expired", good, Error::expired, 1800000000},
      {"not_yet_valid", sign(hs256, payload(R"(,"nbf":1700000001)")), Error::not_yet_valid},
      {"nbf_string", sign(hs256, payload(R"(,"nbf":"soon")")), Error::invalid_nbf},
      {"fractional_exp_floored", sign(hs256, R"({"sub":"a","exp":1700000000.5})"), Error::expired, 1700000000},
      // signature
      {"bad_signature", flip_last_signature_char(good), Error::bad_signature},
      {"other_key", sign_hs256(hs256, payload(), bytes("other-key")), Error::bad_signature},
      {"payload_swapped", good.substr(0, good.find('.') + 1) + b64(R"({"sub":"mallory","exp":9999999999})") + "." +
                              signature,
       Error::bad_signature},
      {"short_signature", good.substr(0, dot2 + 1) + signature.substr(0, 40), Error::bad_signature},
      {"empty_signature", good.substr(0, dot2 + 1), Error::bad_signature},
      {"long_signature", good + "AAAA", Error::bad_signature},
      {"padded_signature", good + "=", Error::bad_format},
      // alg
      {"alg_none_unsigned", b64(R"({"alg":"none"})") + "." + b64(payload()) + ".", Error::wrong_alg},
      {"alg_none_signed", sign(R"({"alg":"none"})", payload()), Error::wrong_alg},
      {"alg_None", sign(R"({"alg":"None"})", payload()), Error::wrong_alg},
      {"alg_hs384", sign(R"({"alg":"HS384"})", payload()), Error::wrong_alg},
      {"alg_rs256", sign(R"({"alg":"RS256"})", payload()), Error::wrong_alg},
      {"alg_lowercase", sign(R"({"alg":"hs256"})", payload()), Error::wrong_alg},
      {"alg_empty", sign(R"({"alg":""})", payload()), Error::wrong_alg},
      {"alg_missing", sign(R"({"typ":"JWT"})", payload()), Error::bad_header},
      {"alg_number", sign(R"({"alg":256})", payload()), Error::bad_header},
      {"alg_twice", sign(R"({"alg":"HS256","alg":"none"})", payload()), Error::bad_header},
      {"crit", sign(R"({"alg":"HS256","crit":["exp"]})", payload()), Error::bad_header},
      {"header_not_json", sign("alg=HS256", payload()), Error::bad_header},
      {"header_array", sign(R"(["HS256"])", payload()), Error::bad_header},
      // format
      {"empty", "", Error::bad_format},
      {"one_part", b64(hs256), Error::bad_format},
      {"two_parts", b64(hs256) + "." + b64(payload()), Error::bad_format},
      {"four_parts", good + ".x", Error::bad_format},
      {"empty_header", "." + b64(payload()) + "." + signature, Error::bad_format},
      {"empty_payload", b64(hs256) + ".." + signature, Error::bad_format},
      {"padded_header", b64(hs256) + "==." + b64(payload()) + "." + signature, Error::bad_format},
      {"std_alphabet", "eyJhbGciOiJIUzI1NiJ9+." + b64(payload()) + "." + signature, Error::bad_format},
      {"spaces", " " + good, Error::bad_format},
      {"too_long", std::string(token_bytes_max + 1, 'a'), Error::too_long},
      // payload (signed, so these reach the claims)
      {"payload_not_json", sign(hs256, "sub=alice"), Error::bad_payload},
      {"payload_array", sign(hs256, "[1]"), Error::bad_payload},
      {"payload_deep", sign(hs256, R"({"sub":"a","exp":1800000000,"x":)" + std::string(20, '[') +
                                       std::string(20, ']') + "}"),
       Error::bad_payload},
      {"duplicate_sub", sign(hs256, R"({"sub":"a","sub":"root","exp":1800000000})"), Error::bad_payload},
      {"missing_sub", sign(hs256, R"({"exp":1800000000})"), Error::missing_sub},
      {"sub_number", sign(hs256, R"({"sub":7,"exp":1800000000})"), Error::invalid_sub},
      {"sub_bad_char", sign(hs256, R"({"sub":"a b","exp":1800000000})"), Error::invalid_sub},
      {"sub_empty", sign(hs256, R"({"sub":"","exp":1800000000})"), Error::invalid_sub},
      {"missing_exp", sign(hs256, R"({"sub":"a"})"), Error::missing_exp},
      {"exp_string", sign(hs256, R"({"sub":"a","exp":"1800000000"})"), Error::invalid_exp},
      {"exp_null", sign(hs256, R"({"sub":"a","exp":null})"), Error::invalid_exp},
      {"exp_huge", sign(hs256, R"({"sub":"a","exp":1e300})"), Error::invalid_exp},
      {"channels_string", sign(hs256, payload(R"(,"channels":"news.*")")), Error::invalid_channels},
      {"channels_bad_pattern", sign(hs256, payload(R"(,"channels":["news*"])")), Error::invalid_channels},
      {"channels_number_item", sign(hs256, payload(R"(,"channels":["a",1])")), Error::invalid_channels},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, Tokens, ::testing::ValuesIn(token_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Claims, Extracted) {
  const Verifier v(key);
  const Result r = v.verify(sign(hs256, payload()), now);
  ASSERT_TRUE(r.ok()) << error_text(r.error);
  EXPECT_EQ(r.claims.sub(), "alice");
  EXPECT_EQ(r.claims.exp(), 1700000600);
  ASSERT_EQ(r.claims.pattern_count(), 2u);
  EXPECT_EQ(r.claims.pattern(0), "news.*");
  EXPECT_EQ(r.claims.pattern(1), "chat");
  EXPECT_TRUE(r.claims.allows("news.eu"));
  EXPECT_TRUE(r.claims.allows("chat"));
  EXPECT_FALSE(r.claims.allows("chat.x"));
  EXPECT_FALSE(r.claims.allows("news"));
  EXPECT_FALSE(r.claims.allows("admin"));
}

TEST(Claims, NoChannelsAllowsNothing) {
  const Verifier v(key);
  const Result r = v.verify(sign(hs256, payload("")), now);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.claims.pattern_count(), 0u);
  EXPECT_FALSE(r.claims.allows("a"));
}

TEST(Claims, PatternLimit) {
  const Verifier v(key);
  auto with_n = [](std::size_t n) {
    std::string list;
    for (std::size_t i = 0; i < n; ++i) list += (i ? ",\"c" : "\"c") + std::to_string(i) + "\"";
    return sign(hs256, payload(",\"channels\":[" + list + "]"));
  };
  EXPECT_TRUE(v.verify(with_n(patterns_max), now).ok());
  EXPECT_EQ(v.verify(with_n(patterns_max + 1), now).error, Error::invalid_channels);
}

TEST(Verifier, KeyLimits) {
  EXPECT_FALSE(Verifier(rg::test::Bytes{}).ready());
  EXPECT_EQ(Verifier(rg::test::Bytes{}).verify(sign(hs256, payload()), now).error, Error::no_key);
  EXPECT_TRUE(Verifier(rg::test::Bytes(key_bytes_max, 'k')).ready());
  EXPECT_FALSE(Verifier(rg::test::Bytes(key_bytes_max + 1, 'k')).ready());
}

TEST(Verifier, KnownTokenFromAnotherImplementation) {
  // Made with python's hmac/hashlib/base64 (key "secret").
  const std::string token =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IiLCJleHAiOjIwMDAwMDAwMDAsImNoYW5uZWxzIjpbIioiXX0."
      "BWkd_etFyDoMIAOxq-jWFDwVrZgL0auXPBKRm_FuJw8";
  EXPECT_EQ(sign_hs256(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"bob","exp":2000000000,"channels":["*"]})",
                       bytes("secret")),
            token);
  const Verifier v(bytes("secret"));
  const Result r = v.verify(token, now);
  ASSERT_TRUE(r.ok()) << error_text(r.error);
  EXPECT_EQ(r.claims.sub(), "bob");
  EXPECT_TRUE(r.claims.allows("anything"));
  EXPECT_EQ(Verifier(bytes("Secret")).verify(token, now).error, Error::bad_signature);
}

TEST(Verifier, RandomCorruptionsNeverVerify) {
  const Verifier v(key);
  const std::string good = sign(hs256, payload());
  std::uint32_t x = 7;
  for (int i = 0; i < 3000; ++i) {
    std::string t = good;
    x = x * 1103515245 + 12345;
    const std::size_t pos = (x >> 8) % t.size();
    x = x * 1103515245 + 12345;
    const char c = static_cast<char>((x >> 16) & 0xFF);
    if (t[pos] == c) continue;
    t[pos] = c;
    const Result r = v.verify(t, now);
    // Flipping only unused low bits of the last char can't happen: decode rejects them.
    EXPECT_FALSE(r.ok()) << pos;
  }
}

}  // namespace
