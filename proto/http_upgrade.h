// Incremental parser for the HTTP/1.1 WebSocket upgrade request (RFC 6455 4.2.1,
// RFC 9112), and builders for the responses.
//
// The parser is a byte-at-a-time state machine over the shared head grammar
// (proto/http_rules.h): it can be fed any split of the request, keeps no copy
// of the raw bytes, and remembers only the few header values an upgrade
// needs, in fixed arrays.  Its whole state is about
// 2.5 KiB and lives in a per-worker pool only while a handshake is in flight.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "proto/http_rules.h"

namespace rg::proto::http {

// Longest path the parser keeps.  A longer path cannot match a route (routes
// are capped at this length by config validation), so it is answered with 404
// without storing it.  The query string does not count: only its first bytes
// are kept, and a long query on a short path still routes.
inline constexpr std::size_t path_bytes_max = 1024;
// Query bytes kept after the path: room for a JWT (?token=, up to 4096
// bytes) plus a channel list.  Beyond it query_truncated() is set.
inline constexpr std::size_t query_bytes_max = 6 * 1024;
inline constexpr std::size_t target_bytes_max = path_bytes_max + query_bytes_max;
// Longest value kept for a header the upgrade needs (Upgrade, Connection,
// Sec-WebSocket-*).  Real values are tens of bytes.
inline constexpr std::size_t value_bytes_max = 1024;
inline constexpr std::size_t protocols_bytes_max = 512;
// The Authorization header's value, kept whole for "Bearer <JWT>" (tokens
// up to 4096 bytes); a longer value is a 431.
inline constexpr std::size_t authorization_bytes_max = 4200;

enum class Method : std::uint8_t { unknown, get, other };

class UpgradeParser {
 public:
  enum class Status : std::uint8_t { need_more, complete, error };

  struct Result {
    Status status;
    std::size_t consumed;  // bytes of this feed() that belong to the request
  };

  explicit UpgradeParser(Limits limits = {}) noexcept : lexer_(limits) {}

  // Feeds the next bytes.  On `complete`, bytes after `consumed` already
  // belong to the WebSocket stream.  On `error`, error_status()/error_reason()
  // say what to answer.  Feeding after complete/error is a programmer error.
  [[nodiscard]] Result feed(std::span<const std::uint8_t> bytes) noexcept;

  [[nodiscard]] std::uint16_t error_status() const noexcept { return error_status_; }
  [[nodiscard]] std::string_view error_reason() const noexcept { return error_reason_; }

  // What was parsed (valid once complete).
  [[nodiscard]] Method method() const noexcept { return method_; }
  [[nodiscard]] std::string_view path() const noexcept { return {path_.data(), path_len_}; }
  [[nodiscard]] bool path_too_long() const noexcept { return path_truncated_; }
  // The query string (after '?', without it), as much of it as fits in
  // query_bytes_max bytes after the path; query_truncated() says some was
  // dropped, so an endpoint that reads it (tokens, channel lists) can refuse
  // with 414 instead of acting on half of it.
  [[nodiscard]] std::string_view query() const noexcept {
    const std::string_view target{path_.data(), path_len_};
    const std::size_t at = target.find('?');
    return at == std::string_view::npos ? std::string_view{} : target.substr(at + 1);
  }
  [[nodiscard]] bool query_truncated() const noexcept { return query_truncated_; }
  [[nodiscard]] std::string_view version() const noexcept { return lexer_.version(); }
  [[nodiscard]] bool host_seen() const noexcept { return host_seen_; }
  [[nodiscard]] bool upgrade_websocket() const noexcept { return upgrade_websocket_; }
  [[nodiscard]] bool upgrade_seen() const noexcept { return upgrade_seen_; }
  [[nodiscard]] bool connection_upgrade() const noexcept { return connection_upgrade_; }
  [[nodiscard]] std::string_view key() const noexcept { return {key_.data(), key_len_}; }
  [[nodiscard]] std::uint8_t key_count() const noexcept { return key_count_; }
  [[nodiscard]] std::string_view ws_version() const noexcept { return {ws_version_.data(), ws_version_len_}; }
  [[nodiscard]] std::uint8_t ws_version_count() const noexcept { return ws_version_count_; }
  [[nodiscard]] std::string_view protocols() const noexcept { return {protocols_.data(), protocols_len_}; }
  [[nodiscard]] std::uint32_t header_count() const noexcept { return lexer_.header_count(); }
  // The Authorization header: how many were seen, and the credentials of a
  // "Bearer" one (scheme case-insensitive), or empty.
  [[nodiscard]] std::uint8_t authorization_count() const noexcept { return authorization_count_; }
  [[nodiscard]] std::string_view bearer_token() const noexcept;

 private:
  enum class Field : std::uint8_t {
    none, host, upgrade, connection, key, ws_version, protocol, authorization,
  };

  Result fail(std::uint16_t status, std::string_view reason, std::size_t consumed) noexcept;
  void classify_header_name() noexcept;
  [[nodiscard]] bool finish_header_value() noexcept;

  HeadLexer lexer_;
  bool finished_ = false;  // complete or error: feed() must not be called again
  Field field_ = Field::none;
  Method method_ = Method::unknown;
  bool path_truncated_ = false;
  bool query_seen_ = false;  // a '?' ended the path: the rest is query
  bool query_truncated_ = false;
  bool host_seen_ = false;
  bool upgrade_seen_ = false;
  bool upgrade_websocket_ = false;
  bool connection_upgrade_ = false;
  bool value_overflow_ = false;
  std::uint8_t key_count_ = 0;
  std::uint8_t ws_version_count_ = 0;
  std::uint8_t authorization_count_ = 0;
  std::uint16_t authorization_len_ = 0;
  std::uint8_t key_len_ = 0;
  std::uint8_t ws_version_len_ = 0;
  std::uint16_t error_status_ = 0;
  std::uint16_t path_len_ = 0;
  std::uint16_t protocols_len_ = 0;
  std::uint16_t value_len_ = 0;
  std::string_view error_reason_;
  std::array<char, 32> key_{};
  std::array<char, 8> ws_version_{};
  std::array<char, target_bytes_max> path_{};  // the path, then the query
  std::array<char, value_bytes_max> value_{};
  std::array<char, protocols_bytes_max> protocols_{};
  std::array<char, authorization_bytes_max> authorization_{};
};

// ---------------------------------------------------------------- decisions

struct UpgradePolicy {
  std::string_view echo_path = "/echo";  // empty: no echo endpoint
  // Comma-separated subprotocols the server speaks, in no particular order.
  std::string_view subprotocols;
  std::string_view pubsub_path = {};  // empty: no pub/sub endpoint
};

// Which endpoint an upgrade is for.
enum class Route : std::uint8_t { echo, pubsub };

struct Decision {
  std::uint16_t status;          // 101, or the error status to answer
  std::string_view reason;       // short human text for error bodies
  std::string_view subprotocol;  // chosen protocol (points into the parser), may be empty
  Route route = Route::echo;
};

// Applies RFC 6455 4.2.1 to a complete request.
[[nodiscard]] Decision decide(const UpgradeParser& request, const UpgradePolicy& policy) noexcept;

// True when `key` is base64 that decodes to exactly 16 bytes (RFC 6455 4.1).
[[nodiscard]] bool key_valid(std::string_view key) noexcept;

// Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)), 28 chars.
using AcceptKey = std::array<char, 28>;
[[nodiscard]] AcceptKey accept_key(std::string_view key) noexcept;

// Longest response the builders produce; callers size buffers with it.
inline constexpr std::size_t response_bytes_max = 512;

// Builds "101 Switching Protocols" into `out`; returns the length.
std::size_t build_switching_protocols(std::span<char, response_bytes_max> out, std::string_view key,
                                      std::string_view subprotocol) noexcept;

// Builds an error response with a text/plain body naming `reason`, plus any
// headers the status needs (Allow for 405, WWW-Authenticate for 401, Sec-WebSocket-Version for 426,
// Retry-After for 503 when retry_after_s > 0).  Always "Connection: close".
std::size_t build_error(std::span<char, response_bytes_max> out, std::uint16_t status, std::string_view reason,
                        std::uint32_t retry_after_s = 0) noexcept;

// Builds an admission refusal (503 at capacity, 429 over the per-IP limit):
// Retry-After, and the JSON body clients and dashboards parse:
// {"error":<status text>,"message":<message>,"retry_after_seconds":N}.
// `message` is a fixed server string (no escaping).
std::size_t build_refusal(std::span<char, response_bytes_max> out, std::uint16_t status, std::string_view message,
                          std::uint32_t retry_after_s) noexcept;

[[nodiscard]] std::string_view status_text(std::uint16_t status) noexcept;

}  // namespace rg::proto::http
