#include "proto/http_upgrade.h"

#include <openssl/base64.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#ifndef OPENSSL_IS_BORINGSSL
#error "ringgate links BoringSSL only (android-libboringssl-dev); OpenSSL 3 headers were picked up"
#endif

namespace rg::proto::http {

namespace {

constexpr bool is_tchar(std::uint8_t c) noexcept {
  // RFC 9110 5.6.2 token characters.
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

constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

// Calls f(token) for each comma-separated, trimmed, non-empty element; stops
// early when f returns true.  Returns whether any call returned true.
template <typename F>
bool for_each_token(std::string_view list, F&& f) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    const std::string_view token = trim(list.substr(0, comma));
    if (!token.empty() && f(token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool has_token(std::string_view list, std::string_view token) {
  return for_each_token(list, [&](std::string_view t) { return iequals(t, token); });
}

constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// Appends to a fixed response buffer.  Overflow is a programmer error: every
// caller's inputs are bounded well below response_bytes_max.
struct Writer {
  std::span<char, response_bytes_max> out;
  std::size_t len = 0;
  void put(std::string_view s) noexcept {
    assert(len + s.size() <= out.size());
    const std::size_t n = std::min(s.size(), out.size() - len);
    std::memcpy(out.data() + len, s.data(), n);
    len += n;
  }
  void put_uint(std::uint64_t v) noexcept {
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) put({&digits[--n], 1});
  }
};

}  // namespace

// ---------------------------------------------------------------- parser

UpgradeParser::Result UpgradeParser::fail(std::uint16_t status, std::string_view reason,
                                          std::size_t consumed) noexcept {
  state_ = State::error;
  error_status_ = status;
  error_reason_ = reason;
  return {Status::error, consumed};
}

bool UpgradeParser::finish_request_line() noexcept {
  const std::string_view m{method_text_.data(), method_len_};
  if (method_ == Method::unknown) method_ = (m == "GET") ? Method::get : Method::other;
  const std::string_view v{version_.data(), version_len_};
  // HTTP-version = "HTTP/" DIGIT "." DIGIT
  return v.size() == 8 && v.substr(0, 5) == "HTTP/" && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' &&
         v[7] <= '9';
}

void UpgradeParser::classify_header_name() noexcept {
  const std::string_view n{name_.data(), name_len_};
  field_ = Field::none;
  if (name_len_ >= name_.size()) return;  // overlong: not one of ours
  if (n == "host") field_ = Field::host;
  else if (n == "upgrade") field_ = Field::upgrade;
  else if (n == "connection") field_ = Field::connection;
  else if (n == "sec-websocket-key") field_ = Field::key;
  else if (n == "sec-websocket-version") field_ = Field::ws_version;
  else if (n == "sec-websocket-protocol") field_ = Field::protocol;
  else if (n == "authorization") field_ = Field::authorization;
}

std::string_view UpgradeParser::bearer_token() const noexcept {
  const std::string_view v{authorization_.data(), authorization_len_};
  constexpr std::string_view scheme = "bearer ";
  if (v.size() <= scheme.size() || !iequals(v.substr(0, scheme.size()), scheme)) return {};
  return trim(v.substr(scheme.size()));
}

bool UpgradeParser::finish_header_value() noexcept {
  ++header_count_;
  if (field_ == Field::none) return true;
  if (value_overflow_) {
    error_status_ = 400;
    error_reason_ = "header value too long";
    return false;
  }
  const std::string_view v = trim({value_.data(), value_len_});
  switch (field_) {
    case Field::host:
      if (host_seen_) {
        error_status_ = 400;
        error_reason_ = "duplicate Host header";
        return false;
      }
      host_seen_ = true;
      break;
    case Field::upgrade:
      upgrade_seen_ = true;
      if (has_token(v, "websocket")) upgrade_websocket_ = true;
      break;
    case Field::connection:
      if (has_token(v, "upgrade")) connection_upgrade_ = true;
      break;
    case Field::key: {
      ++key_count_;
      key_len_ = static_cast<std::uint8_t>(std::min(v.size(), key_.size()));
      std::memcpy(key_.data(), v.data(), key_len_);
      break;
    }
    case Field::ws_version: {
      ++ws_version_count_;
      ws_version_len_ = static_cast<std::uint8_t>(std::min(v.size(), ws_version_.size()));
      std::memcpy(ws_version_.data(), v.data(), ws_version_len_);
      break;
    }
    case Field::protocol: {
      // Several Sec-WebSocket-Protocol headers concatenate into one list.
      const std::size_t need = v.size() + (protocols_len_ ? 1 : 0);
      if (protocols_len_ + need > protocols_.size()) {
        error_status_ = 400;
        error_reason_ = "Sec-WebSocket-Protocol list too long";
        return false;
      }
      if (protocols_len_) protocols_[protocols_len_++] = ',';
      std::memcpy(protocols_.data() + protocols_len_, v.data(), v.size());
      protocols_len_ = static_cast<std::uint16_t>(protocols_len_ + v.size());
      break;
    }
    case Field::authorization:
      // The value went straight into authorization_ (it may be longer than
      // value_); only the trailing whitespace is left to trim.
      if (++authorization_count_ > 1) {
        error_status_ = 400;
        error_reason_ = "duplicate Authorization header";
        return false;
      }
      while (authorization_len_ > 0 &&
             (authorization_[authorization_len_ - 1] == ' ' || authorization_[authorization_len_ - 1] == '\t'))
        --authorization_len_;
      break;
    case Field::none:
      break;
  }
  return true;
}

UpgradeParser::Result UpgradeParser::feed(std::span<const std::uint8_t> bytes) noexcept {
  assert(state_ != State::complete && state_ != State::error);
  std::size_t i = 0;
  for (; i < bytes.size(); ++i) {
    const std::uint8_t c = bytes[i];
    const bool in_request_line = state_ <= State::request_line_lf;
    if (in_request_line) {
      // Empty lines before the request line are tolerated (RFC 9112 2.2) and
      // not counted against the limit.
      if (!(state_ == State::method && method_len_ == 0 && (c == '\r' || c == '\n'))) {
        if (++request_line_bytes_ > limits_.request_line_bytes_max)
          return fail(414, "request line too long", i + 1);
      }
    } else {
      if (++header_bytes_ > limits_.header_bytes_max) return fail(431, "request headers too large", i + 1);
    }

    switch (state_) {
      case State::method:
        if (c == ' ') {
          if (method_len_ == 0) return fail(400, "malformed request line", i + 1);
          state_ = State::path;
        } else if ((c == '\r' || c == '\n') && method_len_ == 0) {
          // leading empty line
        } else if (is_tchar(c)) {
          if (method_len_ < method_text_.size()) method_text_[method_len_++] = static_cast<char>(c);
          else method_ = Method::other;  // longer than any method we serve
        } else {
          return fail(400, "malformed request line", i + 1);
        }
        break;

      case State::path:
        if (c == ' ') {
          if (path_len_ == 0 && !path_truncated_) return fail(400, "malformed request line", i + 1);
          state_ = State::version;
        } else if (c > 0x20 && c < 0x7F) {
          if (c == '?') query_seen_ = true;
          if (!query_seen_ && path_len_ >= path_bytes_max) path_truncated_ = true;  // a long path does not route
          else if (path_len_ < path_.size()) path_[path_len_++] = static_cast<char>(c);
          else query_truncated_ = true;
        } else {
          return fail(400, "malformed request line", i + 1);
        }
        break;

      case State::version:
        if (c == '\r' || c == '\n') {
          if (!finish_request_line()) return fail(400, "malformed request line", i + 1);
          state_ = (c == '\r') ? State::request_line_lf : State::header_start;
        } else if (version_len_ < version_.size() && c > 0x20 && c < 0x7F) {
          version_[version_len_++] = static_cast<char>(c);
        } else {
          return fail(400, "malformed request line", i + 1);
        }
        break;

      case State::request_line_lf:
        if (c != '\n') return fail(400, "malformed request line", i + 1);
        state_ = State::header_start;
        break;

      case State::header_start:
        if (c == '\r') {
          state_ = State::end_lf;
        } else if (c == '\n') {
          state_ = State::complete;
          return {Status::complete, i + 1};
        } else if (c == ' ' || c == '\t') {
          return fail(400, "obsolete header line folding", i + 1);
        } else if (is_tchar(c)) {
          if (header_count_ >= limits_.headers_max) return fail(431, "too many request headers", i + 1);
          name_len_ = 1;
          name_[0] = lower(static_cast<char>(c));
          state_ = State::header_name;
        } else {
          return fail(400, "malformed header line", i + 1);
        }
        break;

      case State::header_name:
        if (c == ':') {
          classify_header_name();
          value_len_ = 0;
          value_overflow_ = false;
          state_ = State::header_value_lead;
        } else if (is_tchar(c)) {
          if (name_len_ < name_.size()) name_[name_len_++] = lower(static_cast<char>(c));
          else name_len_ = static_cast<std::uint8_t>(name_.size());  // mark overlong
        } else if (c == '\r' || c == '\n') {
          return fail(400, "header line without colon", i + 1);
        } else {
          return fail(400, "malformed header name", i + 1);
        }
        break;

      case State::header_value_lead:
        if (c == ' ' || c == '\t') break;
        state_ = State::header_value;
        [[fallthrough]];

      case State::header_value:
        if (c == '\r') {
          state_ = State::header_lf;
        } else if (c == '\n') {
          if (!finish_header_value()) return fail(error_status_, error_reason_, i + 1);
          state_ = State::header_start;
        } else if ((c < 0x20 && c != '\t') || c == 0x7F) {
          return fail(400, "invalid character in header value", i + 1);
        } else if (field_ == Field::authorization) {
          if (authorization_len_ >= authorization_.size()) return fail(431, "Authorization header too long", i + 1);
          authorization_[authorization_len_++] = static_cast<char>(c);
        } else if (field_ != Field::none) {
          if (value_len_ < value_.size()) value_[value_len_++] = static_cast<char>(c);
          else value_overflow_ = true;
        }
        break;

      case State::header_lf:
        if (c != '\n') return fail(400, "malformed header line", i + 1);
        if (!finish_header_value()) return fail(error_status_, error_reason_, i + 1);
        state_ = State::header_start;
        break;

      case State::end_lf:
        if (c != '\n') return fail(400, "malformed end of headers", i + 1);
        state_ = State::complete;
        return {Status::complete, i + 1};

      case State::complete:
      case State::error:
        assert(false && "feed() after the parser finished");
        return {Status::error, i};
    }
  }
  return {Status::need_more, i};
}

// ---------------------------------------------------------------- decisions

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool key_valid(std::string_view key) noexcept {
  // 16 bytes encode to exactly 24 base64 characters with "==" padding.
  if (key.size() != 24) return false;
  std::uint8_t out[18];
  std::size_t out_len = 0;
  if (!EVP_DecodeBase64(out, &out_len, sizeof out, reinterpret_cast<const std::uint8_t*>(key.data()), key.size()))
    return false;
  return out_len == 16;
}

AcceptKey accept_key(std::string_view key) noexcept {
  SHA_CTX sha;
  SHA1_Init(&sha);
  SHA1_Update(&sha, key.data(), key.size());
  SHA1_Update(&sha, websocket_guid.data(), websocket_guid.size());
  std::uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1_Final(digest, &sha);
  std::uint8_t b64[29];  // 28 chars + NUL written by EVP_EncodeBlock
  const std::size_t n = EVP_EncodeBlock(b64, digest, sizeof digest);
  assert(n == 28);
  (void)n;
  AcceptKey out;
  std::memcpy(out.data(), b64, out.size());
  return out;
}

Decision decide(const UpgradeParser& r, const UpgradePolicy& policy) noexcept {
  const std::string_view version = r.version();
  if (version != "HTTP/1.1") {
    if (version == "HTTP/1.0") return {400, "WebSocket upgrade requires HTTP/1.1", {}};
    return {505, "HTTP version not supported", {}};
  }
  if (r.method() != Method::get) return {405, "method not allowed: a WebSocket upgrade must be a GET", {}};
  std::string_view path = r.path();
  path = path.substr(0, path.find('?'));
  if (r.path_too_long()) return {404, "no WebSocket endpoint at this path", {}};
  Route route = Route::echo;
  if (!policy.pubsub_path.empty() && path == policy.pubsub_path) route = Route::pubsub;
  else if (policy.echo_path.empty() || path != policy.echo_path) return {404, "no WebSocket endpoint at this path", {}};
  if (!r.host_seen()) return {400, "missing Host header", {}};
  if (!r.upgrade_websocket()) return {426, "missing Upgrade: websocket header", {}};
  if (!r.connection_upgrade()) return {400, "Connection header must contain the Upgrade token", {}};
  if (r.ws_version_count() == 0) return {426, "missing Sec-WebSocket-Version header", {}};
  if (r.ws_version_count() > 1 || r.ws_version() != "13")
    return {426, "unsupported Sec-WebSocket-Version: only 13 is supported", {}};
  if (r.key_count() == 0) return {400, "missing Sec-WebSocket-Key header", {}};
  if (r.key_count() > 1 || !key_valid(r.key()))
    return {400, "invalid Sec-WebSocket-Key: must be base64 of 16 bytes", {}};

  // The first protocol the client offers that we speak (client preference).
  std::string_view chosen;
  for_each_token(r.protocols(), [&](std::string_view offered) {
    return for_each_token(policy.subprotocols, [&](std::string_view ours) {
      if (offered == ours) chosen = offered;
      return offered == ours;
    });
  });
  return {101, {}, chosen, route};
}

std::string_view status_text(std::uint16_t status) noexcept {
  switch (status) {
    case 101: return "Switching Protocols";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

std::size_t build_switching_protocols(std::span<char, response_bytes_max> out, std::string_view key,
                                      std::string_view subprotocol) noexcept {
  const AcceptKey accept = accept_key(key);
  Writer w{out};
  w.put("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
  w.put({accept.data(), accept.size()});
  w.put("\r\n");
  if (!subprotocol.empty()) {
    w.put("Sec-WebSocket-Protocol: ");
    w.put(subprotocol);
    w.put("\r\n");
  }
  w.put("\r\n");
  return w.len;
}

std::size_t build_refusal(std::span<char, response_bytes_max> out, std::uint16_t status, std::string_view message,
                          std::uint32_t retry_after_s) noexcept {
  const std::string_view text = status_text(status);
  message = message.substr(0, 160);
  char digits[10];
  std::size_t nd = 0;
  for (std::uint32_t v = retry_after_s; nd == 0 || v != 0; v /= 10) digits[nd++] = static_cast<char>('0' + v % 10);
  std::reverse(digits, digits + nd);
  const std::string_view seconds{digits, nd};
  constexpr std::string_view head = R"({"error":")";
  constexpr std::string_view head2 = R"(","message":")";
  constexpr std::string_view mid = R"(","retry_after_seconds":)";
  const std::size_t body_len =
      head.size() + text.size() + head2.size() + message.size() + mid.size() + seconds.size() + 2;  // "}\n"
  Writer w{out};
  w.put("HTTP/1.1 ");
  w.put_uint(status);
  w.put(" ");
  w.put(text);
  w.put("\r\nContent-Type: application/json\r\nContent-Length: ");
  w.put_uint(body_len);
  w.put("\r\nConnection: close\r\nRetry-After: ");
  w.put(seconds);
  w.put("\r\n\r\n");
  w.put(head);
  w.put(text);
  w.put(head2);
  w.put(message);
  w.put(mid);
  w.put(seconds);
  w.put("}\n");
  return w.len;
}

std::size_t build_error(std::span<char, response_bytes_max> out, std::uint16_t status, std::string_view reason,
                        std::uint32_t retry_after_s) noexcept {
  const std::string_view text = status_text(status);
  // Body: "<status> <text>: <reason>\n", short enough for any limit.
  reason = reason.substr(0, 160);
  const std::size_t body_len = 3 + 1 + text.size() + (reason.empty() ? 0 : 2 + reason.size()) + 1;
  Writer w{out};
  w.put("HTTP/1.1 ");
  w.put_uint(status);
  w.put(" ");
  w.put(text);
  w.put("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  w.put_uint(body_len);
  w.put("\r\nConnection: close\r\n");
  if (status == 405) w.put("Allow: GET\r\n");
  if (status == 426) w.put("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
  if (status == 401) w.put("WWW-Authenticate: Bearer\r\n");
  if (retry_after_s > 0) {
    w.put("Retry-After: ");
    w.put_uint(retry_after_s);
    w.put("\r\n");
  }
  w.put("\r\n");
  w.put_uint(status);
  w.put(" ");
  w.put(text);
  if (!reason.empty()) {
    w.put(": ");
    w.put(reason);
  }
  w.put("\n");
  return w.len;
}

}  // namespace rg::proto::http
