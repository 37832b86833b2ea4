// The admin listener's HTTP request parser (control/api_request.h).
#include "control/api_request.h"

#include "proto/http_upgrade.h"

namespace rg::server {

namespace http = rg::proto::http;

namespace {

ApiParse fail(int status, std::string_view reason) {
  return {ApiParse::Status::error, status, reason};
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (http::iequals(http::trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

ApiParse parse_api_request(std::string_view buf, ApiRequest& out) noexcept {
  out = ApiRequest{};
  const std::size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buf.size() > api_head_bytes_max) return fail(431, "request head larger than 8192 bytes");
    return {};
  }
  if (end + 4 > api_head_bytes_max) return fail(431, "request head larger than 8192 bytes");
  out.head_bytes = end + 4;
  std::string_view head = buf.substr(0, end);
  const std::size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  head = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);

  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1 || line.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "malformed request line");
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.0") out.keep_alive = false;
  else if (version != "HTTP/1.1") return fail(505, "only HTTP/1.1 (and 1.0) are served");
  if (out.target.empty() || out.target[0] != '/') return fail(400, "request target must start with '/'");

  while (!head.empty()) {
    const std::size_t eol = head.find("\r\n");
    const std::string_view field = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(400, "header line without a name and colon");
    const std::string_view name = field.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return fail(400, "whitespace in a header name");
    const std::string_view value = http::trim(field.substr(colon + 1));
    if (http::iequals(name, "content-length")) {
      if (out.has_content_length) return fail(400, "duplicate Content-Length header");
      if (value.empty() || value.size() > 15 || value.find_first_not_of("0123456789") != std::string_view::npos)
        return fail(400, "Content-Length is not a number");
      out.has_content_length = true;
      for (const char c : value) out.content_length = out.content_length * 10 + static_cast<std::uint64_t>(c - '0');
    } else if (http::iequals(name, "transfer-encoding")) {
      out.chunked = true;
    } else if (http::iequals(name, "connection")) {
      if (has_token(value, "close")) out.keep_alive = false;
      else if (has_token(value, "keep-alive")) out.keep_alive = true;
    } else if (http::iequals(name, "authorization")) {
      out.authorization = value;
    }
  }
  return {ApiParse::Status::complete, 0, {}};
}

bool same_secret(std::string_view a, std::string_view b) noexcept {
  // The length is not secret (it is the configured token's); the bytes are.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace rg::server
