#include "proto/jwt.h"

#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>

#include <cmath>
#include <cstring>
#include <new>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#ifndef OPENSSL_IS_BORINGSSL
#error "proto/jwt.cpp needs BoringSSL (android-libboringssl-dev), not OpenSSL"
#endif

namespace rg::proto::jwt {

std::string_view error_text(Error e) noexcept {
  switch (e) {
    case Error::none: return "none";
    case Error::no_key: return "no_key";
    case Error::too_long: return "too_long";
    case Error::bad_format: return "bad_format";
    case Error::bad_header: return "bad_header";
    case Error::wrong_alg: return "wrong_alg";
    case Error::bad_signature: return "bad_signature";
    case Error::bad_payload: return "bad_payload";
    case Error::missing_sub: return "missing_sub";
    case Error::invalid_sub: return "invalid_sub";
    case Error::missing_exp: return "missing_exp";
    case Error::invalid_exp: return "invalid_exp";
    case Error::expired: return "expired";
    case Error::invalid_nbf: return "invalid_nbf";
    case Error::not_yet_valid: return "not_yet_valid";
    case Error::invalid_channels: return "invalid_channels";
  }
  return "unknown";
}

std::string_view error_message(Error e) noexcept {
  switch (e) {
    case Error::none: return "token accepted";
    case Error::no_key: return "token rejected: the server has no usable key";
    case Error::too_long: return "token rejected: longer than 4096 bytes";
    case Error::bad_format: return "token rejected: not three base64url parts (header.payload.signature)";
    case Error::bad_header: return "token rejected: header is not a JSON object with a string alg (or has crit)";
    case Error::wrong_alg: return "token rejected: alg must be HS256";
    case Error::bad_signature: return "token rejected: signature does not match";
    case Error::bad_payload: return "token rejected: payload is not a JSON object, or repeats a claim";
    case Error::missing_sub: return "token rejected: no sub claim";
    case Error::invalid_sub: return "token rejected: sub is not a valid name ([A-Za-z0-9._:-], 1..128 bytes)";
    case Error::missing_exp: return "token rejected: no exp claim";
    case Error::invalid_exp: return "token rejected: exp is not a number";
    case Error::expired: return "token rejected: expired (exp is in the past)";
    case Error::invalid_nbf: return "token rejected: nbf is not a number";
    case Error::not_yet_valid: return "token rejected: not valid yet (nbf is in the future)";
    case Error::invalid_channels: return "token rejected: channels is not an array of valid patterns";
  }
  return "token rejected";
}

// ---------------------------------------------------------------- base64url

namespace {

int b64url_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

}  // namespace

bool base64url_decode(std::string_view in, std::span<std::uint8_t> out, std::size_t& out_len) noexcept {
  out_len = 0;
  if (in.size() % 4 == 1) return false;
  const std::size_t need = in.size() / 4 * 3 + (in.size() % 4 == 0 ? 0 : in.size() % 4 - 1);
  if (need > out.size()) return false;
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t n = 0;
  for (const char c : in) {
    const int v = b64url_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = static_cast<std::uint8_t>(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return false;  // non-zero unused bits: not the canonical encoding
  out_len = n;
  return true;
}

std::string base64url_encode(std::span<const std::uint8_t> in) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const std::uint8_t b : in) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += alphabet[(acc << (6 - bits)) & 63];
  return out;
}

// ---------------------------------------------------------------- claims

bool Claims::allows(std::string_view channel) const noexcept {
  for (std::size_t i = 0; i < count_; ++i)
    if (pubsub::pattern_matches(pattern(i), channel)) return true;
  return false;
}

bool Claims::add_pattern(std::string_view p) noexcept {
  if (!pubsub::pattern_valid(p) || count_ == patterns_max || p.size() > patterns_.size() - used_) return false;
  std::memcpy(patterns_.data() + used_, p.data(), p.size());
  start_[count_] = static_cast<std::uint16_t>(used_);
  len_[count_] = static_cast<std::uint8_t>(p.size());
  used_ += p.size();
  ++count_;
  return true;
}

// ---------------------------------------------------------------- verifier

namespace {

constexpr std::size_t sha256_bytes = 32;
// Longest decoded part: 3/4 of the token.
constexpr std::size_t part_bytes_max = token_bytes_max / 4 * 3;
constexpr std::size_t json_depth_max = 8;

}  // namespace

struct Verifier::Impl {
  simdjson::dom::parser parser{part_bytes_max};
  std::array<std::uint8_t, part_bytes_max + simdjson::SIMDJSON_PADDING> decoded{};
  std::array<std::uint8_t, key_bytes_max> key{};
  std::size_t key_len = 0;
  bool ready = false;
};

Verifier::Verifier(std::span<const std::uint8_t> key) noexcept : impl_(new (std::nothrow) Impl) {
  if (!impl_ || key.empty() || key.size() > key_bytes_max) return;
  std::memcpy(impl_->key.data(), key.data(), key.size());
  impl_->key_len = key.size();
  impl_->ready = impl_->parser.allocate(part_bytes_max, json_depth_max) == simdjson::SUCCESS;
}
Verifier::~Verifier() {
  if (impl_) OPENSSL_cleanse(impl_->key.data(), impl_->key.size());
}
bool Verifier::ready() const noexcept { return impl_ && impl_->ready; }

namespace {

// A NumericDate: an integer, or a fraction (floored).  False if not a number
// or out of int64 range.
bool numeric_date(simdjson::dom::element v, std::int64_t& out) noexcept {
  if (v.get_int64().get(out) == simdjson::SUCCESS) return true;
  double d = 0;
  if (v.get_double().get(d) != simdjson::SUCCESS || !std::isfinite(d)) return false;
  if (d < -9.2e18 || d > 9.2e18) return false;
  out = static_cast<std::int64_t>(std::floor(d));
  return true;
}

struct Claim {
  bool seen = false;
  simdjson::dom::element value;
};

Error check_claims(simdjson::dom::object payload, std::int64_t now_s, Claims& claims,
                   bool (Claims::*add)(std::string_view), std::array<char, pubsub::name_bytes_max>& sub_buf,
                   std::uint8_t& sub_len, std::int64_t& exp_out) noexcept {
  Claim sub, exp, nbf, channels;
  for (const auto field : payload) {
    Claim* c = field.key == "sub"        ? &sub
               : field.key == "exp"      ? &exp
               : field.key == "nbf"      ? &nbf
               : field.key == "channels" ? &channels
                                         : nullptr;
    if (c == nullptr) continue;
    if (c->seen) return Error::bad_payload;
    c->seen = true;
    c->value = field.value;
  }
  if (!sub.seen) return Error::missing_sub;
  std::string_view sub_text;
  if (sub.value.get_string().get(sub_text) != simdjson::SUCCESS || !pubsub::check_name(sub_text).ok())
    return Error::invalid_sub;
  if (!exp.seen) return Error::missing_exp;
  std::int64_t exp_s = 0;
  if (!numeric_date(exp.value, exp_s)) return Error::invalid_exp;
  if (now_s >= exp_s) return Error::expired;
  if (nbf.seen) {
    std::int64_t nbf_s = 0;
    if (!numeric_date(nbf.value, nbf_s)) return Error::invalid_nbf;
    if (now_s < nbf_s) return Error::not_yet_valid;
  }
  if (channels.seen) {
    simdjson::dom::array list;
    if (channels.value.get_array().get(list) != simdjson::SUCCESS) return Error::invalid_channels;
    for (const auto item : list) {
      std::string_view p;
      if (item.get_string().get(p) != simdjson::SUCCESS || !(claims.*add)(p)) return Error::invalid_channels;
    }
  }
  std::memcpy(sub_buf.data(), sub_text.data(), sub_text.size());
  sub_len = static_cast<std::uint8_t>(sub_text.size());
  exp_out = exp_s;
  return Error::none;
}

}  // namespace

Result Verifier::verify(std::string_view token, std::int64_t now_s) const noexcept {
  Result r;
  auto fail = [&r](Error e) noexcept {
    r.error = e;
    return r;
  };
  if (!ready()) return fail(Error::no_key);
  if (token.size() > token_bytes_max) return fail(Error::too_long);
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return fail(Error::bad_format);
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_b64 = token.substr(dot2 + 1);
  if (header_b64.empty() || payload_b64.empty()) return fail(Error::bad_format);

  Impl& s = *impl_;
  std::size_t len = 0;
  simdjson::dom::element root;
  simdjson::dom::object object;

  // 1. The header, and its alg, before anything else.
  if (!base64url_decode(header_b64, {s.decoded.data(), part_bytes_max}, len)) return fail(Error::bad_format);
  if (s.parser.parse(s.decoded.data(), len, false).get(root) || root.get_object().get(object))
    return fail(Error::bad_header);
  std::string_view alg;
  bool alg_seen = false;
  for (const auto field : object) {
    if (field.key == "crit") return fail(Error::bad_header);  // no extension is understood
    if (field.key != "alg") continue;
    if (alg_seen || field.value.get_string().get(alg) != simdjson::SUCCESS) return fail(Error::bad_header);
    alg_seen = true;
  }
  if (!alg_seen) return fail(Error::bad_header);
  if (alg != "HS256") return fail(Error::wrong_alg);

  // 2. The signature over the ASCII "header.payload".
  if (!base64url_decode(signature_b64, {s.decoded.data(), part_bytes_max}, len)) return fail(Error::bad_format);
  if (len != sha256_bytes) return fail(Error::bad_signature);
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> expected{};
  unsigned expected_len = 0;
  const std::string_view signed_part = token.substr(0, dot2);
  if (HMAC(EVP_sha256(), s.key.data(), s.key_len, reinterpret_cast<const std::uint8_t*>(signed_part.data()),
           signed_part.size(), expected.data(), &expected_len) == nullptr ||
      expected_len != sha256_bytes)
    return fail(Error::bad_signature);
  if (CRYPTO_memcmp(expected.data(), s.decoded.data(), sha256_bytes) != 0) return fail(Error::bad_signature);

  // 3. Only now the (authenticated) payload.
  if (!base64url_decode(payload_b64, {s.decoded.data(), part_bytes_max}, len)) return fail(Error::bad_format);
  if (s.parser.parse(s.decoded.data(), len, false).get(root) || root.get_object().get(object))
    return fail(Error::bad_payload);
  return fail(check_claims(object, now_s, r.claims, &Claims::add_pattern, r.claims.sub_, r.claims.sub_len_,
                           r.claims.exp_));
}

std::string sign_hs256(std::string_view header_json, std::string_view payload_json,
                       std::span<const std::uint8_t> key) {
  auto bytes = [](std::string_view s) {
    return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  std::string token = base64url_encode(bytes(header_json)) + "." + base64url_encode(bytes(payload_json));
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> mac{};
  unsigned mac_len = 0;
  HMAC(EVP_sha256(), key.data(), key.size(), bytes(token).data(), token.size(), mac.data(), &mac_len);
  return token + "." + base64url_encode({mac.data(), mac_len});
}

}  // namespace rg::proto::jwt
