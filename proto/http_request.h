// The admin/API listener's HTTP/1.1 request-head parser: enough of RFC 9112
// for GETs from scrapers and health checkers and POSTs from publishers
// (Content-Length bodies, keep-alive), over the head grammar the upgrade
// parser uses (proto/http_rules.h): the same bytes are refused by both ports,
// with the same reasons.  Pure: it reads a buffer and says what it found, so
// unit tests can feed it every split.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proto/http_rules.h"

namespace rg::proto::http {

struct Request {
  std::string_view method;
  std::string_view target;         // as sent, query included
  std::string_view authorization;  // the header's value, trimmed
  std::uint64_t content_length = 0;
  bool has_content_length = false;
  bool chunked = false;        // Transfer-Encoding present (not supported: 411)
  bool keep_alive = true;      // HTTP/1.1 without "Connection: close"
  std::size_t head_bytes = 0;  // any leading empty lines, the request line, the headers and the blank line

  [[nodiscard]] std::string_view path() const noexcept { return target.substr(0, target.find('?')); }
};

// The admin listener's limits: its requests are short GETs and POST heads.
inline constexpr Limits request_limits{8 * 1024, 8 * 1024, 64};
// Content-Length digits accepted: 15 cannot overflow, and any body that
// large is refused (413) long before.
inline constexpr std::size_t content_length_digits_max = 15;

class RequestParser {
 public:
  enum class Status : std::uint8_t { need_more, complete, error };

  RequestParser() noexcept : RequestParser(request_limits) {}
  explicit RequestParser(Limits limits) noexcept : lexer_(limits), limits_(limits) {}

  // `buf` holds the request from its first byte, everything received so far.
  // The parser resumes after the bytes earlier calls saw (which must not have
  // changed), so a head trickled in a thousand pieces is still read once.
  // On `complete`, `out` views `buf`; on `error`, error_status() (400, 414,
  // 431 or 505) and error_reason() say what to answer.  Feeding again after
  // either gives the same answer (a complete head viewed in the buffer as it
  // is now, e.g. while its body arrives); reset() for the next request.
  [[nodiscard]] Status feed(std::string_view buf, Request& out) noexcept;

  [[nodiscard]] std::uint16_t error_status() const noexcept { return error_status_; }
  [[nodiscard]] std::string_view error_reason() const noexcept { return error_reason_; }
  void reset() noexcept { *this = RequestParser(limits_); }

 private:
  enum class Field : std::uint8_t { none, content_length, transfer_encoding, connection, authorization };

  Status fail(std::uint16_t status, std::string_view reason) noexcept {
    status_ = Status::error;
    error_status_ = status;
    error_reason_ = reason;
    return Status::error;
  }
  [[nodiscard]] bool finish_field(std::string_view value) noexcept;
  Status complete(std::string_view buf, Request& out) const noexcept;

  HeadLexer lexer_;
  Limits limits_;
  Status status_ = Status::need_more;
  Field field_ = Field::none;
  bool value_started_ = false;
  std::uint16_t error_status_ = 0;
  std::size_t fed_ = 0;  // bytes of the buffer seen so far
  // Offsets into the buffer: views are made only when the head is complete,
  // since the buffer may move between calls.
  std::size_t method_at_ = 0;
  std::size_t method_len_ = 0;
  std::size_t target_at_ = 0;
  std::size_t value_at_ = 0;
  std::size_t value_end_ = 0;  // after the last byte that is not whitespace
  std::size_t authorization_at_ = 0;
  std::size_t authorization_len_ = 0;
  std::string_view error_reason_;
  Request request_;  // the parts that are not views
};

}  // namespace rg::proto::http
