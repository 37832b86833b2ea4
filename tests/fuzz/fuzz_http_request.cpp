// proto/http_request.h: RequestParser, the admin/publish API's request-head
// parser (over the head grammar proto/http_rules.h shares with the upgrade
// parser).
//
// Input: [flags] [bytes...]
//   flags   the step, 1..255, at which the bytes arrive in pieces
// The listener feeds one parser the growing buffer as bytes arrive; the
// parser resumes where it stopped.  Checked: whatever the pieces, the answer
// is the one the whole buffer gets at once (status, head length, error status
// and reason); a complete head ends with its blank line and every view lies
// inside it; an error names a status the listener answers and a reason.
#include <algorithm>
#include <cstdint>
#include <string_view>

#include "fuzz_support.h"
#include "proto/http_request.h"

namespace {

namespace http = rg::proto::http;
using Status = http::RequestParser::Status;

bool within(std::string_view part, std::string_view buf) {
  return part.empty() || (part.data() >= buf.data() && part.data() + part.size() <= buf.data() + buf.size());
}

void check(Status s, const http::RequestParser& p, const http::Request& r, std::string_view buf) {
  switch (s) {
    case Status::need_more:
      FUZZ_CHECK(p.error_status() == 0);
      break;
    case Status::error:
      FUZZ_CHECK(p.error_status() == 400 || p.error_status() == 414 || p.error_status() == 431 ||
                 p.error_status() == 505);
      FUZZ_CHECK(!p.error_reason().empty());
      break;
    case Status::complete: {
      FUZZ_CHECK(r.head_bytes >= 4 && r.head_bytes <= buf.size());
      const std::string_view head = buf.substr(0, r.head_bytes);
      FUZZ_CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
      FUZZ_CHECK(!r.method.empty() && within(r.method, head));
      FUZZ_CHECK(!r.target.empty() && within(r.target, head));
      FUZZ_CHECK(within(r.authorization, head));
      FUZZ_CHECK(r.authorization.find_first_of("\r\n") == std::string_view::npos);
      FUZZ_CHECK(r.path() == r.target.substr(0, r.target.find('?')));
      FUZZ_CHECK(r.has_content_length || r.content_length == 0);
      FUZZ_CHECK(p.error_status() == 0);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::size_t step = std::max<std::size_t>(in.byte(), 1);
  const std::string_view buf = rg::fuzz::chars(in.rest());

  http::RequestParser whole;
  http::Request req;
  const Status s = whole.feed(buf, req);
  check(s, whole, req, buf);
  // Fed again, the same answer.
  http::Request again;
  FUZZ_CHECK(whole.feed(buf, again) == s);

  // Arriving in pieces of `step` bytes: the same answer in the end, and
  // nothing complete before the blank line has arrived.
  http::RequestParser pieces;
  http::Request part;
  Status last = Status::need_more;
  for (std::size_t k = std::min(step, buf.size());; k = std::min(k + step, buf.size())) {
    last = pieces.feed(buf.substr(0, k), part);
    check(last, pieces, part, buf.substr(0, k));
    if (last != Status::need_more || k == buf.size()) break;
  }
  FUZZ_CHECK(last == s);
  if (s == Status::complete) {
    FUZZ_CHECK(part.head_bytes == req.head_bytes && part.method == req.method && part.target == req.target &&
               part.content_length == req.content_length && part.keep_alive == req.keep_alive &&
               part.chunked == req.chunked && part.authorization == req.authorization);
  }
  if (s == Status::error) {
    FUZZ_CHECK(pieces.error_status() == whole.error_status());
    FUZZ_CHECK(pieces.error_reason() == whole.error_reason());
  }
  return 0;
}
