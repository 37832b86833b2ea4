// The HTTP/1.1 request-head grammar both request parsers share: the upgrade
// parser (proto/http_upgrade.h) and the admin/API parser (proto/http_request.h).
// One lexer, so the two listeners can never disagree about what a well-formed
// request is: which bytes may stand where (RFC 9110 5.5, 5.6.2; RFC 9112 3, 5),
// CRLF line endings only, the size limits, and the headers that may appear
// once.  Each rule that fails names itself in a 400's reason (http_rules::reason).
//
// The lexer is fed one byte at a time and says what the byte was; the parsers
// keep whatever they need of the target and the values.  It keeps the method,
// the version and the current header name itself (64 bytes).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rg::proto::http {

struct Limits {
  std::uint32_t request_line_bytes_max = 8 * 1024;  // 414 beyond this
  std::uint32_t header_bytes_max = 32 * 1024;       // 431 beyond this (all header lines)
  std::uint32_t headers_max = 100;                  // 431 beyond this
};

// The reasons a head is refused, one text per rule.  Both parsers answer with
// these, so a client sees the same words from either port.
namespace reason {
inline constexpr std::string_view malformed_request_line = "malformed request line";
inline constexpr std::string_view bare_lf = "bare LF line ending (lines must end with CRLF)";
inline constexpr std::string_view bare_cr = "bare CR (a CR must be followed by LF)";
inline constexpr std::string_view nul_in_value = "NUL in a header value";
inline constexpr std::string_view control_in_value = "control character in a header value";
inline constexpr std::string_view obs_fold = "obsolete header line folding";
inline constexpr std::string_view malformed_header_line = "malformed header line";
inline constexpr std::string_view header_without_colon = "header line without colon";
inline constexpr std::string_view malformed_header_name = "malformed header name";
inline constexpr std::string_view duplicate_host = "duplicate Host header";
inline constexpr std::string_view duplicate_authorization = "duplicate Authorization header";
inline constexpr std::string_view duplicate_content_length = "duplicate Content-Length header";
inline constexpr std::string_view request_line_too_long = "request line too long";
inline constexpr std::string_view headers_too_large = "request headers too large";
inline constexpr std::string_view too_many_headers = "too many request headers";
}  // namespace reason

// RFC 9110 5.6.2 token characters (methods, header names).
[[nodiscard]] constexpr bool is_tchar(std::uint8_t c) noexcept {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// A request-target byte: visible ASCII (RFC 9112 3.2 allows nothing else
// unencoded).
[[nodiscard]] constexpr bool is_target_char(std::uint8_t c) noexcept { return c > 0x20 && c < 0x7F; }

[[nodiscard]] constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

// ASCII case-insensitive equality, and trimming optional whitespace (SP,
// HTAB); shared with the client side (ringgate-load).
[[nodiscard]] constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}
[[nodiscard]] constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// What one byte of a request head was.
enum class Lexeme : std::uint8_t {
  none,          // consumed with nothing to record: whitespace, a CR awaiting its LF, a leading empty line
  method,        // a method byte (also kept: method())
  target,        // a request-target byte
  request_line,  // the request line ended (its LF); method() and version() hold it, the version is well formed
  name,          // a header name ended (its ':'); name() holds it, lower-cased
  value,         // a header value byte (leading whitespace skipped, trailing whitespace included)
  field,         // a header line ended (its LF)
  head,          // the blank line that ends the head: the request head is complete
  error,         // the head breaks a rule: error_status(), error_reason()
};

class HeadLexer {
 public:
  explicit constexpr HeadLexer(Limits limits = {}) noexcept : limits_(limits) {}

  // The next byte.  After `head` or `error` the lexer must not be fed again.
  [[nodiscard, gnu::always_inline]] inline Lexeme step(std::uint8_t c) noexcept;

  [[nodiscard]] std::uint16_t error_status() const noexcept { return error_status_; }
  [[nodiscard]] std::string_view error_reason() const noexcept { return error_reason_; }
  // The method as sent (at most method_bytes_max bytes kept; method_overlong()
  // says there were more), and the version ("HTTP/1.1").
  [[nodiscard]] std::string_view method() const noexcept { return {method_.data(), method_len_}; }
  [[nodiscard]] bool method_overlong() const noexcept { return method_overlong_; }
  [[nodiscard]] std::string_view version() const noexcept { return {version_.data(), version_len_}; }
  // The current header's name, lower-cased; empty when it is longer than
  // name_bytes_max (no header either parser reads is that long).
  [[nodiscard]] std::string_view name() const noexcept {
    return name_len_ > name_.size() ? std::string_view{} : std::string_view{name_.data(), name_len_};
  }
  [[nodiscard]] std::uint32_t header_count() const noexcept { return header_count_; }
  [[nodiscard]] std::uint32_t target_bytes() const noexcept { return target_bytes_; }

  static constexpr std::size_t method_bytes_max = 16;
  static constexpr std::size_t name_bytes_max = 32;

 private:
  enum class State : std::uint8_t {
    leading_lf, method, target, version, request_line_lf,
    header_start, header_name, header_value_lead, header_value, header_lf,
    end_lf, done,
  };
  // Headers that must appear at most once (RFC 9110 5.3): two Hosts or two
  // Content-Lengths are how requests get smuggled past a proxy, and of two
  // Authorizations one parser would take the first and another the last.
  enum Singleton : std::uint8_t { host = 1, authorization = 2, content_length = 4 };

  Lexeme fail(std::uint16_t status, std::string_view reason) noexcept {
    state_ = State::done;
    error_status_ = status;
    error_reason_ = reason;
    return Lexeme::error;
  }
  [[nodiscard]] bool version_valid() const noexcept;
  Lexeme end_of_name() noexcept;

  Limits limits_;
  State state_ = State::method;
  std::uint8_t singletons_seen_ = 0;
  bool method_overlong_ = false;
  std::uint8_t method_len_ = 0;
  std::uint8_t version_len_ = 0;
  std::uint8_t name_len_ = 0;  // name_bytes_max + 1: overlong
  std::uint16_t error_status_ = 0;
  std::uint32_t request_line_bytes_ = 0;
  std::uint32_t header_bytes_ = 0;
  std::uint32_t header_count_ = 0;
  std::uint32_t target_bytes_ = 0;
  std::string_view error_reason_;
  std::array<char, method_bytes_max> method_{};
  std::array<char, 16> version_{};
  std::array<char, name_bytes_max> name_{};
};

// ---------------------------------------------------------------- inline

inline bool HeadLexer::version_valid() const noexcept {
  // HTTP-version = "HTTP/" DIGIT "." DIGIT
  const std::string_view v = version();
  return v.size() == 8 && v.substr(0, 5) == "HTTP/" && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' &&
         v[7] <= '9';
}

inline Lexeme HeadLexer::end_of_name() noexcept {
  const std::string_view n = name();
  std::uint8_t which = 0;
  std::string_view duplicate;
  if (n == "host") which = host, duplicate = reason::duplicate_host;
  else if (n == "authorization") which = authorization, duplicate = reason::duplicate_authorization;
  else if (n == "content-length") which = content_length, duplicate = reason::duplicate_content_length;
  if (which != 0) {
    if (singletons_seen_ & which) return fail(400, duplicate);
    singletons_seen_ = static_cast<std::uint8_t>(singletons_seen_ | which);
  }
  state_ = State::header_value_lead;
  return Lexeme::name;
}

inline Lexeme HeadLexer::step(std::uint8_t c) noexcept {
  // Limits first: a byte over one is refused whatever it is.  Empty lines
  // before the request line (tolerated, RFC 9112 2.2) count against the
  // request line's limit, so they cannot go on for ever.
  if (state_ <= State::request_line_lf) {
    if (++request_line_bytes_ > limits_.request_line_bytes_max) return fail(414, reason::request_line_too_long);
  } else if (++header_bytes_ > limits_.header_bytes_max) {
    return fail(431, reason::headers_too_large);
  }

  switch (state_) {
    case State::leading_lf:
      if (c != '\n') return fail(400, reason::bare_cr);
      state_ = State::method;
      return Lexeme::none;

    case State::method:
      if (c == ' ') {
        if (method_len_ == 0 && !method_overlong_) return fail(400, reason::malformed_request_line);
        state_ = State::target;
        return Lexeme::none;
      }
      if (is_tchar(c)) {
        if (method_len_ < method_.size()) method_[method_len_++] = static_cast<char>(c);
        else method_overlong_ = true;
        return Lexeme::method;
      }
      if (method_len_ == 0 && !method_overlong_) {
        if (c == '\r') {
          state_ = State::leading_lf;
          return Lexeme::none;
        }
        if (c == '\n') return fail(400, reason::bare_lf);
      }
      return fail(400, reason::malformed_request_line);

    case State::target:
      if (c == ' ') {
        if (target_bytes_ == 0) return fail(400, reason::malformed_request_line);
        state_ = State::version;
        return Lexeme::none;
      }
      if (!is_target_char(c)) return fail(400, reason::malformed_request_line);
      ++target_bytes_;
      return Lexeme::target;

    case State::version:
      if (c == '\r') {
        if (!version_valid()) return fail(400, reason::malformed_request_line);
        state_ = State::request_line_lf;
        return Lexeme::none;
      }
      if (c == '\n') return fail(400, reason::bare_lf);
      if (version_len_ < version_.size() && c > 0x20 && c < 0x7F) {
        version_[version_len_++] = static_cast<char>(c);
        return Lexeme::none;
      }
      return fail(400, reason::malformed_request_line);

    case State::request_line_lf:
      if (c != '\n') return fail(400, reason::bare_cr);
      state_ = State::header_start;
      return Lexeme::request_line;

    case State::header_start:
      if (c == '\r') {
        state_ = State::end_lf;
        return Lexeme::none;
      }
      if (c == '\n') return fail(400, reason::bare_lf);
      if (c == ' ' || c == '\t') return fail(400, reason::obs_fold);
      if (!is_tchar(c)) return fail(400, reason::malformed_header_line);
      if (header_count_ >= limits_.headers_max) return fail(431, reason::too_many_headers);
      name_len_ = 1;
      name_[0] = lower(static_cast<char>(c));
      state_ = State::header_name;
      return Lexeme::none;

    case State::header_name:
      if (c == ':') return end_of_name();
      if (is_tchar(c)) {
        if (name_len_ < name_.size()) name_[name_len_++] = lower(static_cast<char>(c));
        else name_len_ = name_bytes_max + 1;  // overlong: not a header either parser reads
        return Lexeme::none;
      }
      if (c == '\r' || c == '\n') return fail(400, reason::header_without_colon);
      return fail(400, reason::malformed_header_name);

    case State::header_value_lead:
      if (c == ' ' || c == '\t') return Lexeme::none;
      state_ = State::header_value;
      [[fallthrough]];

    case State::header_value:
      if (c == '\r') {
        state_ = State::header_lf;
        return Lexeme::none;
      }
      if (c == '\n') return fail(400, reason::bare_lf);
      if (c == 0) return fail(400, reason::nul_in_value);
      if ((c < 0x20 && c != '\t') || c == 0x7F) return fail(400, reason::control_in_value);
      return Lexeme::value;  // VCHAR, SP, HTAB and obs-text (0x80-0xFF)

    case State::header_lf:
      if (c != '\n') return fail(400, reason::bare_cr);
      ++header_count_;
      state_ = State::header_start;
      return Lexeme::field;

    case State::end_lf:
      if (c != '\n') return fail(400, reason::bare_cr);
      state_ = State::done;
      return Lexeme::head;

    case State::done:
      break;
  }
  return fail(400, reason::malformed_request_line);  // fed after head or error: a programmer error
}

}  // namespace rg::proto::http
