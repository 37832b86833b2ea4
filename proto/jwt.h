// JWT (RFC 7519) verification for pub/sub auth: JWS compact form, HS256 only
// (HMAC-SHA-256, RFC 7518 3.2), with BoringSSL's HMAC and a constant-time
// compare.  The claims the server uses are `sub` (the user), `exp` (checked
// against a caller-supplied clock), optional `nbf`, and `channels` (the
// patterns of proto/pubsub.h the user may subscribe to).
//
// The header's "alg" must be exactly "HS256": "none", "HS384", "RS256", a
// missing alg, anything else is rejected before the signature is looked at,
// so the key is never used with another algorithm.  verify() is noexcept and
// allocates nothing; a Verifier owns its simdjson buffers (one per worker).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "proto/pubsub.h"

namespace rg::proto::jwt {

inline constexpr std::size_t token_bytes_max = 4096;
inline constexpr std::size_t key_bytes_max = 256;
inline constexpr std::size_t patterns_max = 32;
inline constexpr std::size_t patterns_bytes_max = 2048;  // all `channels` entries together

enum class Error : std::uint8_t {
  none,
  no_key,            // the Verifier has no usable key (empty, too long, or out of memory)
  too_long,          // token over token_bytes_max
  bad_format,        // not three base64url (no padding) parts
  bad_header,        // header is not a JSON object with a string "alg", or has "crit"
  wrong_alg,         // alg is not "HS256" (this includes "none")
  bad_signature,     // signature is not 32 bytes or does not match
  bad_payload,       // payload is not a JSON object, or repeats a claim
  missing_sub,
  invalid_sub,       // not a string, or not a valid name (pubsub::check_name)
  missing_exp,
  invalid_exp,       // not a number
  expired,           // now >= exp
  invalid_nbf,
  not_yet_valid,     // now < nbf
  invalid_channels,  // not an array of valid patterns, or over the limits
};
[[nodiscard]] std::string_view error_text(Error e) noexcept;  // "bad_signature", ...
// A sentence for the 401 body, naming what was wrong ("token expired (exp)").
[[nodiscard]] std::string_view error_message(Error e) noexcept;

// The verified claims, copied out of the token.
class Claims {
 public:
  [[nodiscard]] std::string_view sub() const noexcept { return {sub_.data(), sub_len_}; }
  [[nodiscard]] std::int64_t exp() const noexcept { return exp_; }
  [[nodiscard]] std::size_t pattern_count() const noexcept { return count_; }
  [[nodiscard]] std::string_view pattern(std::size_t i) const noexcept {
    return {patterns_.data() + start_[i], len_[i]};
  }
  // True when some pattern matches `channel` (pubsub::pattern_matches).
  [[nodiscard]] bool allows(std::string_view channel) const noexcept;

 private:
  friend class Verifier;
  bool add_pattern(std::string_view p) noexcept;

  std::array<char, pubsub::name_bytes_max> sub_{};
  std::uint8_t sub_len_ = 0;
  std::int64_t exp_ = 0;
  std::size_t count_ = 0;
  std::size_t used_ = 0;
  std::array<std::uint16_t, patterns_max> start_{};
  std::array<std::uint8_t, patterns_max> len_{};
  std::array<char, patterns_bytes_max> patterns_{};
};

struct Result {
  Error error = Error::none;
  Claims claims;  // meaningful only when ok()
  [[nodiscard]] bool ok() const noexcept { return error == Error::none; }
};

class Verifier {
 public:
  // The HMAC key (1..256 bytes).  Copied.
  explicit Verifier(std::span<const std::uint8_t> key) noexcept;
  ~Verifier();
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  [[nodiscard]] bool ready() const noexcept;
  // `now_s`: seconds since the Unix epoch.  No leeway: pass now - leeway for one.
  [[nodiscard]] Result verify(std::string_view token, std::int64_t now_s) const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- helpers

// base64url without padding (RFC 4648 5, RFC 7515 2).  decode rejects '=',
// other alphabets, a length of 4k+1 and non-zero unused bits (so one value
// has one encoding).  Returns false on bad input or when `out` is too small.
[[nodiscard]] bool base64url_decode(std::string_view in, std::span<std::uint8_t> out, std::size_t& out_len) noexcept;
[[nodiscard]] std::string base64url_encode(std::span<const std::uint8_t> in);

// For tests and tools, not the data path (allocates): a token whose header
// and payload are the given JSON texts, verbatim, signed with HS256 whatever
// the header says.
[[nodiscard]] std::string sign_hs256(std::string_view header_json, std::string_view payload_json,
                                     std::span<const std::uint8_t> key);

}  // namespace rg::proto::jwt
