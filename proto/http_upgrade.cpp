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
  finished_ = true;
  error_status_ = status;
  error_reason_ = reason;
  return {Status::error, consumed};
}

void UpgradeParser::classify_header_name() noexcept {
  const std::string_view n = lexer_.name();
  field_ = Field::none;
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
  if (field_ == Field::none) return true;
  if (value_overflow_) {
    error_status_ = 400;
    error_reason_ = "header value too long";
    return false;
  }
  const std::string_view v = trim({value_.data(), value_len_});
  switch (field_) {
    case Field::host:
      host_seen_ = true;  // a second Host is the lexer's 400
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
      // value_); only the trailing whitespace is left to trim.  A second
      // Authorization is the lexer's 400.
      ++authorization_count_;
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
  assert(!finished_);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const std::uint8_t c = bytes[i];
    switch (lexer_.step(c)) {
      case Lexeme::none:
      case Lexeme::method:
        break;
      case Lexeme::target:
        if (c == '?') query_seen_ = true;
        if (!query_seen_ && path_len_ >= path_bytes_max) path_truncated_ = true;  // a long path does not route
        else if (path_len_ < path_.size()) path_[path_len_++] = static_cast<char>(c);
        else query_truncated_ = true;
        break;
      case Lexeme::request_line:
        method_ = !lexer_.method_overlong() && lexer_.method() == "GET" ? Method::get : Method::other;
        break;
      case Lexeme::name:
        classify_header_name();
        value_len_ = 0;
        value_overflow_ = false;
        break;
      case Lexeme::value:
        if (field_ == Field::authorization) {
          if (authorization_len_ >= authorization_.size()) return fail(431, "Authorization header too long", i + 1);
          authorization_[authorization_len_++] = static_cast<char>(c);
        } else if (field_ != Field::none) {
          if (value_len_ < value_.size()) value_[value_len_++] = static_cast<char>(c);
          else value_overflow_ = true;
        }
        break;
      case Lexeme::field:
        if (!finish_header_value()) return fail(error_status_, error_reason_, i + 1);
        field_ = Field::none;
        break;
      case Lexeme::head:
        finished_ = true;
        return {Status::complete, i + 1};
      case Lexeme::error:
        return fail(lexer_.error_status(), lexer_.error_reason(), i + 1);
    }
  }
  return {Status::need_more, bytes.size()};
}

// ---------------------------------------------------------------- decisions

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
