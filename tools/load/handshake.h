// The client side of the HTTP/1.1 upgrade (RFC 6455 4.1): building the
// request and reading the response.  Pure: bytes in, verdicts out, so tests
// can feed it split or hostile responses.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "proto/http_upgrade.h"

namespace rg::load::handshake {

// base64 of 16 random bytes.
using Key = std::array<char, 24>;
[[nodiscard]] Key make_key(std::uint64_t random_a, std::uint64_t random_b) noexcept;

// A request is the fixed text plus the path (<= 1024), the Host value (<= 300)
// and the key.
inline constexpr std::size_t request_bytes_max = 1536;
// Response headers beyond this are refused: ringgate's answers are ~130-300 B.
inline constexpr std::size_t response_bytes_max = 4096;

// Writes the upgrade request into `out`; returns its length, or 0 when it
// does not fit.
std::size_t build_request(std::span<std::uint8_t> out, std::string_view host_header, std::string_view path,
                          const Key& key) noexcept;

enum class Status : std::uint8_t {
  need_more,     // no blank line yet
  complete,      // header_bytes says where the WebSocket stream starts
  malformed,     // not an HTTP/1.x status line, or headers too large
};

struct Response {
  Status status = Status::need_more;
  std::uint16_t code = 0;          // HTTP status
  bool retry_after = false;        // a Retry-After header was present
  bool accept_matches = false;     // Sec-WebSocket-Accept equals accept_key(key)
  bool upgrade_websocket = false;  // Upgrade: websocket
  std::size_t header_bytes = 0;    // bytes up to and including the blank line
};

// Parses the response headers at the start of `bytes` (which hold everything
// received so far).  `expected_accept` is proto::http::accept_key(key).
[[nodiscard]] Response parse_response(std::span<const std::uint8_t> bytes,
                                      const proto::http::AcceptKey& expected_accept) noexcept;

}  // namespace rg::load::handshake
