// The admin/API listener's HTTP/1.1 request head parser: enough of RFC 9112
// for GETs from scrapers and POSTs from publishers (Content-Length bodies,
// keep-alive).  Pure: it reads a buffer and says what it found, so unit tests
// can feed it every split.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rg::server {

struct ApiRequest {
  std::string_view method;
  std::string_view target;         // as sent, query included
  std::string_view authorization;  // the header's value, trimmed
  std::uint64_t content_length = 0;
  bool has_content_length = false;
  bool chunked = false;     // Transfer-Encoding present (not supported: 411)
  bool keep_alive = true;   // HTTP/1.1 without "Connection: close"
  std::size_t head_bytes = 0;  // request line + headers + the blank line

  [[nodiscard]] std::string_view path() const noexcept { return target.substr(0, target.find('?')); }
};

struct ApiParse {
  enum class Status : std::uint8_t { need_more, complete, error };
  Status status = Status::need_more;
  int error_status = 0;         // with error: 400, 431 or 505
  std::string_view error_reason;  // static text
};

// The head of the request at the start of `buf`.  Views point into `buf`.
inline constexpr std::size_t api_head_bytes_max = 8192;
[[nodiscard]] ApiParse parse_api_request(std::string_view buf, ApiRequest& out) noexcept;

// Constant-time comparison for bearer tokens: the time taken does not
// depend on where the first difference is.
[[nodiscard]] bool same_secret(std::string_view a, std::string_view b) noexcept;

}  // namespace rg::server
