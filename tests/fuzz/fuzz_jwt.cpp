// proto/jwt.h: Verifier (HS256 JWTs), base64url, Claims.
//
// Input: [mode] [now: 8 bytes] [bytes...]
//   mode bit 0  0: the bytes are the token, verified as they come;
//               1: the bytes are a JWT payload, signed with the test key
//                  (tests/unit/test_jwt.cpp's), so the verifier gets past
//                  the signature to the claims
//        bit 1  with 1: the header is the input's first line instead of
//                  {"alg":"HS256","typ":"JWT"} (still signed)
//   now         seconds since the epoch; mode bits 2-3 = 0 replace it with
//               1'700'000'000, the unit tests' clock
// What must hold: a raw token verifies only if it is exactly what signing
// its decoded parts gives; a signed token never fails format, header or
// signature checks; accepted claims are valid, within limits, and stay
// valid until exp and not after; base64url round-trips.
#include <algorithm>
#include <cstdint>
#include <string>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "fuzz_support.h"
#include "proto/jwt.h"

namespace {

using namespace rg::proto::jwt;
namespace pubsub = rg::proto::pubsub;

constexpr std::string_view test_key = "secret-key-for-tests";
constexpr std::string_view hs256 = R"({"alg":"HS256","typ":"JWT"})";

const Verifier& verifier() {
  static const Verifier v(rg::fuzz::bytes(test_key));
  return v;
}

void check_accepted(const Result& r, std::string_view token, std::int64_t now) {
  const Claims& c = r.claims;
  FUZZ_CHECK(pubsub::check_name(c.sub()).ok());
  FUZZ_CHECK(c.exp() > now);
  FUZZ_CHECK(c.pattern_count() <= patterns_max);
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < c.pattern_count(); ++i) {
    const std::string_view p = c.pattern(i);
    FUZZ_CHECK(pubsub::pattern_valid(p));
    bytes += p.size();
    if (pubsub::check_name(p).ok()) FUZZ_CHECK(c.allows(p));  // a plain name allows itself
  }
  FUZZ_CHECK(bytes <= patterns_bytes_max);
  // Valid until exp, not at it.
  FUZZ_CHECK(verifier().verify(token, c.exp() - 1).error == Error::none);
  FUZZ_CHECK(verifier().verify(token, c.exp()).error == Error::expired);
}

void check_base64url(std::span<const std::uint8_t> in) {
  const std::string enc = base64url_encode(in);
  FUZZ_CHECK(enc.size() == (in.size() * 4 + 2) / 3);
  std::vector<std::uint8_t> out(in.size() + 3);
  std::size_t n = 0;
  FUZZ_CHECK(base64url_decode(enc, out, n) && n == in.size() && std::equal(in.begin(), in.end(), out.begin()));
  // One canonical encoding: what decodes re-encodes to itself.
  const std::string_view text = rg::fuzz::chars(in);
  if (base64url_decode(text, out, n)) FUZZ_CHECK(base64url_encode({out.data(), n}) == text);
  // Too small an output is refused, never overrun (ASan watches).
  if (n > 0) {
    std::vector<std::uint8_t> small(n - 1);
    std::size_t m = 0;
    FUZZ_CHECK(!base64url_decode(text, small, m));
  }
}

void check_raw(std::string_view token, std::int64_t now) {
  const Result r = verifier().verify(token, now);
  FUZZ_CHECK(r.error == verifier().verify(token, now).error);
  FUZZ_CHECK(!error_text(r.error).empty() && !error_message(r.error).empty());
  if (token.size() > token_bytes_max) FUZZ_CHECK(r.error == Error::too_long);
  if (!r.ok()) return;
  // Accepted: the token is exactly the signature of its own parts.
  const std::size_t dot1 = token.find('.'), dot2 = token.rfind('.');
  std::vector<std::uint8_t> header(token.size()), payload(token.size());
  std::size_t hn = 0, pn = 0;
  FUZZ_CHECK(base64url_decode(token.substr(0, dot1), header, hn));
  FUZZ_CHECK(base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload, pn));
  FUZZ_CHECK(sign_hs256(rg::fuzz::chars({header.data(), hn}), rg::fuzz::chars({payload.data(), pn}),
                        rg::fuzz::bytes(test_key)) == token);
  check_accepted(r, token, now);
}

void check_signed(std::string_view header, std::string_view payload, bool own_header, std::int64_t now) {
  const std::string token = sign_hs256(header, payload, rg::fuzz::bytes(test_key));
  const Result r = verifier().verify(token, now);
  if (token.size() > token_bytes_max) {
    FUZZ_CHECK(r.error == Error::too_long);
    return;
  }
  FUZZ_CHECK(r.error != Error::no_key && r.error != Error::bad_signature);
  // An empty part is a format error; nothing else about a signed token is.
  FUZZ_CHECK((r.error == Error::bad_format) == (header.empty() || payload.empty()));
  if (r.error == Error::bad_format) return;
  if (!own_header) FUZZ_CHECK(r.error != Error::bad_header && r.error != Error::wrong_alg);
  if (r.error == Error::none) {
    check_accepted(r, token, now);
    // Any other key's signature is refused.
    const std::string forged = sign_hs256(header, payload, rg::fuzz::bytes("secret-key-for-tests!"));
    FUZZ_CHECK(verifier().verify(forged, now).error == Error::bad_signature);
  }
  // A payload that is not a JSON object (depth 8) is bad_payload, once past the header.
  if (r.error == Error::bad_header || r.error == Error::wrong_alg) return;
  static simdjson::dom::parser depth8 = [] {
    simdjson::dom::parser p;
    if (p.allocate(token_bytes_max, 8) != simdjson::SUCCESS) std::abort();
    return p;
  }();
  const simdjson::padded_string padded(payload);
  simdjson::dom::element root;
  simdjson::dom::object obj;
  const bool is_object = !depth8.parse(padded).get(root) && !root.get_object().get(obj);
  if (!is_object) FUZZ_CHECK(r.error == Error::bad_payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t mode = in.byte();
  std::int64_t now = static_cast<std::int64_t>(in.u64());
  if ((mode & 0x0C) == 0) now = 1'700'000'000;
  const std::string_view rest = rg::fuzz::chars(in.rest());
  FUZZ_CHECK(verifier().ready());

  check_base64url(in.rest());
  if ((mode & 1) == 0) {
    check_raw(rest, now);
  } else if (mode & 2) {
    const std::size_t nl = rest.find('\n');
    check_signed(rest.substr(0, nl), nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1), true,
                 now);
  } else {
    check_signed(hs256, rest, false, now);
  }
  return 0;
}
