// The admin listener's request-head parser (proto/http_request.h): a table of
// heads fed whole, in two pieces split at every byte and byte by byte (the
// buffer growing as the admin's does, and moving between feeds), and the
// rules it shares with the upgrade parser (http_rule_cases.h).

#include "proto/http_request.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http_rule_cases.h"

namespace {

using rg::proto::http::Request;
using rg::proto::http::RequestParser;
using Status = RequestParser::Status;

struct Outcome {
  Status status = Status::need_more;
  std::uint16_t error_status = 0;
  std::string error_reason;
  std::string method, target, path, authorization;
  std::uint64_t content_length = 0;
  bool has_content_length = false, chunked = false, keep_alive = false;
  std::size_t head_bytes = 0;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{status " << static_cast<int>(o.status) << ", error " << o.error_status << " '" << o.error_reason
            << "', " << o.method << " '" << o.target << "', auth '"
            << o.authorization << "', length " << o.content_length << ", head " << o.head_bytes << "}";
}

// Feeds `input` as the admin does: the buffer holds everything received so
// far, and a fresh copy each time (so views into an old one would dangle).
Outcome feed_pieces(const std::string& input, const std::vector<std::size_t>& cuts) {
  RequestParser p;
  Request req;
  Outcome o;
  std::string buf;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : input.size();
    buf = std::string(input.substr(0, to));
    o.status = p.feed(buf, req);
    if (o.status != Status::need_more) break;
  }
  if (o.status == Status::error) {
    o.error_status = p.error_status();
    o.error_reason = p.error_reason();
  }
  if (o.status == Status::complete) {
    o.method = req.method;
    o.target = req.target;
    o.path = req.path();
    o.authorization = req.authorization;
    o.content_length = req.content_length;
    o.has_content_length = req.has_content_length;
    o.chunked = req.chunked;
    o.keep_alive = req.keep_alive;
    o.head_bytes = req.head_bytes;
    // Fed again (the body arriving in a moved buffer): the same request.
    const std::string more = buf + "more body";
    Request again;
    EXPECT_EQ(p.feed(more, again), Status::complete);
    EXPECT_EQ(again.target, o.target);
    EXPECT_EQ(again.authorization, o.authorization);
    EXPECT_EQ(again.head_bytes, o.head_bytes);
  }
  return o;
}

// Whole, split in two at every byte, byte by byte: the same outcome.  A
// split only changes when the answer comes, never what it is.
Outcome check_every_split(const std::string& input) {
  const Outcome whole = feed_pieces(input, {});
  for (std::size_t k = 0; k <= input.size(); ++k) EXPECT_EQ(feed_pieces(input, {k}), whole) << "split at " << k;
  std::vector<std::size_t> every;
  for (std::size_t k = 1; k < input.size(); ++k) every.push_back(k);
  EXPECT_EQ(feed_pieces(input, every), whole) << "byte by byte";
  return whole;
}

struct Case {
  std::string name;
  std::string input;
  Status status;
  std::uint16_t error_status = 0;
  std::uint64_t length = 0;
  bool keep_alive = true;
  std::string target = {};
  std::string authorization = {};
  std::size_t head_bytes = 0;  // 0: the whole input
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

class RequestHeads : public ::testing::TestWithParam<Case> {};

TEST_P(RequestHeads, WholeSplitAndByteByByteAgree) {
  const Case& c = GetParam();
  const Outcome o = check_every_split(c.input);
  SCOPED_TRACE(::testing::PrintToString(o));
  ASSERT_EQ(o.status, c.status);
  if (c.status == Status::error) {
    EXPECT_EQ(o.error_status, c.error_status);
    EXPECT_FALSE(o.error_reason.empty());
    return;
  }
  if (c.status != Status::complete) return;
  EXPECT_EQ(o.content_length, c.length);
  EXPECT_EQ(o.keep_alive, c.keep_alive);
  EXPECT_EQ(o.head_bytes, c.head_bytes ? c.head_bytes : c.input.size());
  if (!c.target.empty()) {
    EXPECT_EQ(o.target, c.target);
  }
  EXPECT_EQ(o.authorization, c.authorization);
}

std::vector<Case> cases() {
  const std::string post = "POST /publish/a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
  return {
      {"post", post, Status::complete, 0, 12, true, "/publish/a"},
      {"post_then_body", post + "{\"a\":1}12345", Status::complete, 0, 12, true, "/publish/a", {}, post.size()},
      {"get_close", "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", Status::complete, 0, 0, false, "/metrics"},
      {"http10", "GET / HTTP/1.0\r\n\r\n", Status::complete, 0, 0, false, "/"},
      {"http10_keep_alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", Status::complete, 0, 0, true},
      {"leading_empty_lines", "\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", Status::complete, 0, 0, true, "/healthz"},
      {"authorization_trimmed", "POST /users/al/send?x=1 HTTP/1.1\r\nauthorization:  Bearer t0k \t\r\n\r\n",
       Status::complete, 0, 0, true, "/users/al/send?x=1", "Bearer t0k"},
      {"empty_values", "GET / HTTP/1.1\r\nX-Empty:\r\nAuthorization:   \r\n\r\n", Status::complete, 0, 0, true, "/"},
      {"obs_text_in_value", "GET / HTTP/1.1\r\nX-Name: caf\xC3\xA9\r\n\r\n", Status::complete, 0, 0, true},
      {"bad_length", "POST /p HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", Status::error, 400},
      {"negative_length", "POST /p HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Status::error, 400},
      {"long_length", "POST /p HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\n", Status::error, 400},
      {"http2", "GET / HTTP/2.0\r\n\r\n", Status::error, 505},
      {"target_not_a_path", "GET * HTTP/1.1\r\n\r\n", Status::error, 400},
      {"no_target", "GET  HTTP/1.1\r\n\r\n", Status::error, 400},
      {"huge_header", "GET / HTTP/1.1\r\nX: " + std::string(8200, 'a') + "\r\n\r\n", Status::error, 431},
      {"huge_target", "GET /" + std::string(8200, 'a') + " HTTP/1.1\r\n\r\n", Status::error, 414},
      {"too_many_headers",
       [] {
         std::string h = "GET / HTTP/1.1\r\n";
         for (int i = 0; i < 65; ++i) h += "X-" + std::to_string(i) + ": v\r\n";
         return h + "\r\n";
       }(),
       Status::error, 431},
      {"incomplete", "GET /metrics HTTP/1.1\r\nHost: x\r\n", Status::need_more},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, RequestHeads, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(RequestHeads, TransferEncodingIsNoted) {
  RequestParser p;
  Request req;
  ASSERT_EQ(p.feed("POST /publish/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", req), Status::complete);
  EXPECT_TRUE(req.chunked);
  EXPECT_FALSE(req.has_content_length);
}

TEST(RequestHeads, ResetReadsTheNextRequest) {
  const std::string two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
  RequestParser p;
  Request req;
  ASSERT_EQ(p.feed(two, req), Status::complete);
  EXPECT_EQ(req.target, "/a");
  const std::string rest = two.substr(req.head_bytes);
  p.reset();
  ASSERT_EQ(p.feed(rest, req), Status::complete);
  EXPECT_EQ(req.target, "/b");
}

// The rules shared with the upgrade parser: the same status, the same reason,
// seen at the same byte.
class RequestSharedRules : public ::testing::TestWithParam<rg::test::HttpRuleCase> {};

TEST_P(RequestSharedRules, RefusedWithTheirReason) {
  const rg::test::HttpRuleCase& r = GetParam();
  const Outcome o = check_every_split(r.input);
  EXPECT_EQ(o.status, Status::error);
  EXPECT_EQ(o.error_status, r.status);
  EXPECT_EQ(o.error_reason, r.reason);
  // Not a byte later: the prefix that ends with the offending byte is
  // refused, the one before it is not yet.
  EXPECT_EQ(feed_pieces(r.input.substr(0, r.consumed), {}).status, Status::error);
  EXPECT_EQ(feed_pieces(r.input.substr(0, r.consumed - 1), {}).status, Status::need_more);
}

INSTANTIATE_TEST_SUITE_P(Table, RequestSharedRules, ::testing::ValuesIn(rg::test::http_rule_cases()),
                         [](const ::testing::TestParamInfo<rg::test::HttpRuleCase>& i) { return i.param.name; });

}  // namespace
