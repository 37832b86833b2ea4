// control/api_request.h: parse_api_request, the admin/publish API's request
// head parser, and same_secret.
//
// Input: [flags] [bytes...]
//   flags bits 0-2  how many leading bytes of the rest split it into two
//                   secrets for same_secret (0: none)
// The whole input is parsed as the buffer; the listener re-parses its buffer
// as bytes arrive, so every prefix up to the end of the head must say
// need_more (or, past 8192 bytes, 431) and never a different head.
#include <algorithm>
#include <cstdint>
#include <string>

#include "control/api_request.h"
#include "fuzz_support.h"

namespace {

using rg::server::ApiParse;
using rg::server::ApiRequest;
using rg::server::api_head_bytes_max;
using rg::server::parse_api_request;

bool within(std::string_view part, std::string_view buf) {
  return part.empty() || (part.data() >= buf.data() && part.data() + part.size() <= buf.data() + buf.size());
}

void check(const ApiParse& p, const ApiRequest& r, std::string_view buf) {
  const std::size_t end = buf.find("\r\n\r\n");
  switch (p.status) {
    case ApiParse::Status::need_more:
      FUZZ_CHECK(end == std::string_view::npos);
      FUZZ_CHECK(buf.size() <= api_head_bytes_max);
      FUZZ_CHECK(p.error_status == 0);
      break;
    case ApiParse::Status::error:
      FUZZ_CHECK(p.error_status == 400 || p.error_status == 431 || p.error_status == 505);
      FUZZ_CHECK(!p.error_reason.empty());
      if (p.error_status == 431) FUZZ_CHECK(end == std::string_view::npos || end + 4 > api_head_bytes_max);
      break;
    case ApiParse::Status::complete:
      FUZZ_CHECK(end != std::string_view::npos);
      FUZZ_CHECK(r.head_bytes == end + 4 && r.head_bytes <= api_head_bytes_max);
      FUZZ_CHECK(!r.method.empty() && r.method.find(' ') == std::string_view::npos);
      FUZZ_CHECK(!r.target.empty() && r.target[0] == '/' && r.target.find(' ') == std::string_view::npos);
      FUZZ_CHECK(r.path() == r.target.substr(0, r.target.find('?')));
      // Views into the head, never past it (the body is the caller's).
      FUZZ_CHECK(within(r.method, buf.substr(0, r.head_bytes)));
      FUZZ_CHECK(within(r.target, buf.substr(0, r.head_bytes)));
      FUZZ_CHECK(within(r.authorization, buf.substr(0, r.head_bytes)));
      FUZZ_CHECK(r.authorization.find("\r\n") == std::string_view::npos);
      FUZZ_CHECK(r.has_content_length || r.content_length == 0);
      FUZZ_CHECK(r.content_length < 1'000'000'000'000'000);  // at most 15 digits
      FUZZ_CHECK(p.error_status == 0);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::string_view buf = rg::fuzz::chars(in.rest());

  ApiRequest req;
  const ApiParse p = parse_api_request(buf, req);
  check(p, req, buf);

  if (p.status == ApiParse::Status::complete) {
    // The head alone says the same (a body after it changes nothing).
    ApiRequest head_only;
    const ApiParse q = parse_api_request(buf.substr(0, req.head_bytes), head_only);
    FUZZ_CHECK(q.status == ApiParse::Status::complete);
    FUZZ_CHECK(head_only.method == req.method && head_only.target == req.target &&
               head_only.authorization == req.authorization && head_only.content_length == req.content_length &&
               head_only.has_content_length == req.has_content_length && head_only.chunked == req.chunked &&
               head_only.keep_alive == req.keep_alive && head_only.head_bytes == req.head_bytes);
  }
  // Arriving in pieces: each prefix is parsed afresh, as the listener does.
  // Before the head's last byte it is not complete; nothing is decided
  // before the blank line except 431 for a head too long.
  const std::size_t head_end = p.status == ApiParse::Status::complete ? req.head_bytes : buf.size();
  for (std::size_t k = 0; k < head_end && k <= api_head_bytes_max + 1; k += 1 + k / 64) {
    ApiRequest partial;
    const ApiParse q = parse_api_request(buf.substr(0, k), partial);
    check(q, partial, buf.substr(0, k));
    FUZZ_CHECK(q.status != ApiParse::Status::complete);
  }

  // same_secret is string equality.
  const std::size_t cut = std::min<std::size_t>(flags & 7, buf.size());
  const std::string_view a = buf.substr(0, cut), b = buf.substr(cut, cut);
  FUZZ_CHECK(rg::server::same_secret(a, b) == (a == b));
  FUZZ_CHECK(rg::server::same_secret(buf, buf));
  return 0;
}
