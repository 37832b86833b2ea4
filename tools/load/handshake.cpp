#include "tools/load/handshake.h"

#include <cstring>

namespace rg::load::handshake {

namespace {

constexpr char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

using proto::http::iequals;
using proto::http::trim;

}  // namespace

Key make_key(std::uint64_t random_a, std::uint64_t random_b) noexcept {
  std::uint8_t raw[18] = {};  // 16 bytes, padded to a multiple of 3
  std::memcpy(raw, &random_a, 8);
  std::memcpy(raw + 8, &random_b, 8);
  Key key{};
  for (std::size_t i = 0, o = 0; i < 18; i += 3, o += 4) {
    const std::uint32_t v = (std::uint32_t{raw[i]} << 16) | (std::uint32_t{raw[i + 1]} << 8) | raw[i + 2];
    key[o] = base64_alphabet[(v >> 18) & 63];
    key[o + 1] = base64_alphabet[(v >> 12) & 63];
    key[o + 2] = base64_alphabet[(v >> 6) & 63];
    key[o + 3] = base64_alphabet[v & 63];
  }
  // 16 bytes encode to 22 characters and "==".
  key[22] = '=';
  key[23] = '=';
  return key;
}

std::size_t build_request(std::span<std::uint8_t> out, std::string_view host_header, std::string_view path,
                          const Key& key) noexcept {
  const std::string_view parts[] = {
      "GET ", path, " HTTP/1.1\r\nHost: ", host_header,
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", {key.data(), key.size()},
      "\r\nSec-WebSocket-Version: 13\r\n\r\n",
  };
  std::size_t len = 0;
  for (const auto part : parts) {
    if (len + part.size() > out.size()) return 0;
    std::memcpy(out.data() + len, part.data(), part.size());
    len += part.size();
  }
  return len;
}

Response parse_response(std::span<const std::uint8_t> bytes, const proto::http::AcceptKey& expected_accept) noexcept {
  Response r;
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const auto end = text.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    r.status = text.size() >= response_bytes_max ? Status::malformed : Status::need_more;
    // Fail early on garbage rather than waiting for a blank line that never comes.
    if (text.size() >= 5 && !text.starts_with("HTTP/")) r.status = Status::malformed;
    return r;
  }
  if (end + 4 > response_bytes_max) {
    r.status = Status::malformed;
    return r;
  }
  r.header_bytes = end + 4;
  std::string_view head = text.substr(0, end + 2);  // each line ends in CRLF
  auto line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 101 Switching Protocols"
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') {
    r.status = Status::malformed;
    return r;
  }
  std::uint16_t code = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    const char c = status_line[i];
    if (c < '0' || c > '9') {
      r.status = Status::malformed;
      return r;
    }
    code = static_cast<std::uint16_t>(code * 10 + (c - '0'));
  }
  r.code = code;
  head.remove_prefix(line_end + 2);
  while (!head.empty()) {
    line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    head.remove_prefix(line_end + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;  // tolerated: not ours to police
    const std::string_view name = trim(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "sec-websocket-accept")) {
      r.accept_matches = value == std::string_view(expected_accept.data(), expected_accept.size());
    } else if (iequals(name, "retry-after")) {
      r.retry_after = true;
    } else if (iequals(name, "upgrade")) {
      r.upgrade_websocket = iequals(value, "websocket");
    }
  }
  r.status = Status::complete;
  return r;
}

}  // namespace rg::load::handshake
