// The admin/API listener's request-head parser (proto/http_request.h).
#include "proto/http_request.h"

namespace rg::proto::http {

namespace {

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool RequestParser::finish_field(std::string_view value) noexcept {
  switch (field_) {
    case Field::content_length:
      if (value.empty() || value.size() > content_length_digits_max ||
          value.find_first_not_of("0123456789") != std::string_view::npos) {
        fail(400, "Content-Length is not a number");
        return false;
      }
      request_.has_content_length = true;
      for (const char c : value) request_.content_length = request_.content_length * 10 + static_cast<std::uint64_t>(c - '0');
      break;
    case Field::transfer_encoding:
      request_.chunked = true;
      break;
    case Field::connection:
      if (has_token(value, "close")) request_.keep_alive = false;
      else if (has_token(value, "keep-alive")) request_.keep_alive = true;
      break;
    case Field::authorization:
      authorization_at_ = value_at_;
      authorization_len_ = value.size();
      break;
    case Field::none:
      break;
  }
  return true;
}

RequestParser::Status RequestParser::complete(std::string_view buf, Request& out) const noexcept {
  out = request_;
  out.method = buf.substr(method_at_, method_len_);
  out.target = buf.substr(target_at_, lexer_.target_bytes());
  out.authorization = buf.substr(authorization_at_, authorization_len_);
  out.head_bytes = fed_;
  return Status::complete;
}

RequestParser::Status RequestParser::feed(std::string_view buf, Request& out) noexcept {
  if (status_ == Status::complete) return complete(buf, out);
  if (status_ == Status::error) return Status::error;
  for (; fed_ < buf.size(); ++fed_) {
    const std::size_t i = fed_;
    const auto c = static_cast<std::uint8_t>(buf[i]);
    switch (lexer_.step(c)) {
      case Lexeme::none:
        break;
      case Lexeme::method:
        if (method_len_++ == 0) method_at_ = i;
        break;
      case Lexeme::target:
        if (lexer_.target_bytes() == 1) target_at_ = i;
        break;
      case Lexeme::request_line: {
        const std::string_view version = lexer_.version();
        if (version == "HTTP/1.0") request_.keep_alive = false;
        else if (version != "HTTP/1.1") return fail(505, "only HTTP/1.1 (and 1.0) are served");
        if (buf[target_at_] != '/') return fail(400, "request target must start with '/'");
        break;
      }
      case Lexeme::name: {
        const std::string_view n = lexer_.name();
        field_ = n == "content-length"      ? Field::content_length
                 : n == "transfer-encoding" ? Field::transfer_encoding
                 : n == "connection"        ? Field::connection
                 : n == "authorization"     ? Field::authorization
                                            : Field::none;
        value_started_ = false;
        value_at_ = value_end_ = i + 1;
        break;
      }
      case Lexeme::value:
        if (!value_started_) {
          value_started_ = true;
          value_at_ = i;
        }
        if (c != ' ' && c != '\t') value_end_ = i + 1;  // trailing whitespace is not the value's
        break;
      case Lexeme::field: {
        const std::string_view value =
            value_started_ ? buf.substr(value_at_, value_end_ - value_at_) : std::string_view{};
        if (!finish_field(value)) return Status::error;
        field_ = Field::none;
        break;
      }
      case Lexeme::head:
        ++fed_;
        status_ = Status::complete;
        return complete(buf, out);
      case Lexeme::error:
        return fail(lexer_.error_status(), lexer_.error_reason());
    }
  }
  return Status::need_more;
}

}  // namespace rg::proto::http
