// HTTP upgrade: the incremental parser (a table of requests fed whole, split
// in two at every byte boundary and byte by byte), decide(), key handling and
// the response builders.

#include "proto/http_upgrade.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "http_rule_cases.h"
#include "test_support.h"

namespace {

using namespace rg::proto::http;
using Status = UpgradeParser::Status;

// ------------------------------------------------------------------ keys

TEST(AcceptKey, Rfc6455Section13Example) {
  const AcceptKey k = accept_key("dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(std::string_view(k.data(), k.size()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(AcceptKey, OtherKnownValues) {
  // Pairs computed independently (python: base64(sha1(key + GUID))).
  struct {
    const char* key;
    const char* accept;
  } cases[] = {
      {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
      {"AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
      {"", "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w="},
  };
  for (const auto& c : cases) {
    const AcceptKey k = accept_key(c.key);
    EXPECT_EQ(std::string_view(k.data(), k.size()), c.accept) << c.key;
  }
}

struct KeyCase {
  std::string key;
  bool valid;
};

class KeyValid : public ::testing::TestWithParam<KeyCase> {};

TEST_P(KeyValid, Checks) { EXPECT_EQ(key_valid(GetParam().key), GetParam().valid) << "'" << GetParam().key << "'"; }

INSTANTIATE_TEST_SUITE_P(
    Table, KeyValid,
    ::testing::Values(KeyCase{"dGhlIHNhbXBsZSBub25jZQ==", true}, KeyCase{"AAAAAAAAAAAAAAAAAAAAAA==", true},
                      KeyCase{"/////////////////////w==", true}, KeyCase{"+/+/+/+/+/+/+/+/+/+/+w==", true},
                      KeyCase{"", false},                          // empty
                      KeyCase{"dGhlIHNhbXBsZSBub25jZQ=", false},   // 23 chars
                      KeyCase{"dGhlIHNhbXBsZSBub25jZQ===", false},  // 25 chars
                      KeyCase{"dGhlIHNhbXBsZSBub25jZQ", false},    // unpadded
                      KeyCase{"AAAAAAAAAAAAAAAAAAAAAAA=", false},  // 17 bytes
                      KeyCase{"AAAAAAAAAAAAAAAAAAAAAAAA", false},  // 18 bytes
                      KeyCase{"dGhlIHNhbXBsZSBub25jZQ!=", false},  // bad alphabet
                      KeyCase{"dGhlIHNhbXBs ZSBub25jZQ=", false},  // inner space
                      KeyCase{"dGhlIHNhbXBsZSBub25j====", false},  // padding in the middle
                      KeyCase{"dGhlIHNhbXBsZSBub25jZQ-_", false},  // url-safe alphabet
                      KeyCase{"dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==", false}));

// ------------------------------------------------------------------ requests

std::string request(std::string_view line, const std::vector<std::string>& headers, std::string_view eol = "\r\n") {
  std::string out(line);
  out += eol;
  for (const auto& h : headers) {
    out += h;
    out += eol;
  }
  out += eol;
  return out;
}

std::vector<std::string> base_headers() {
  return {
      "Host: example.com",
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
  };
}

std::vector<std::string> without(std::string_view name) {
  std::vector<std::string> out;
  for (auto& h : base_headers())
    if (h.compare(0, name.size(), name) != 0 || h[name.size()] != ':') out.push_back(h);
  return out;
}

std::vector<std::string> replaced(std::string_view name, std::string value) {
  std::vector<std::string> out = without(name);
  out.push_back(std::string(name) + ": " + value);
  return out;
}

std::vector<std::string> plus(std::vector<std::string> hs, std::vector<std::string> more) {
  hs.insert(hs.end(), more.begin(), more.end());
  return hs;
}

std::string base_request(std::string_view line = "GET /echo HTTP/1.1") { return request(line, base_headers()); }

struct RequestCase {
  std::string name;
  std::string input;             // request (+ any trailing bytes)
  Status status;                 // parser result after all bytes
  std::uint16_t http_status;     // parser error status, or decide() status when complete
  std::string trailing = {};     // bytes after the request (WebSocket stream)
  Limits limits = {};
  std::string subprotocol = {};  // expected choice on 101
  std::optional<std::size_t> consumed = {};  // expected total for errors
};

std::ostream& operator<<(std::ostream& os, const RequestCase& c) { return os << c.name; }

const UpgradePolicy policy{"/echo", "chat,superchat,v2.json", ""};

// What one feeding strategy observed.
struct Outcome {
  Status status = Status::need_more;
  std::uint16_t error_status = 0;
  std::string error_reason;
  std::size_t consumed = 0;
  std::uint16_t decided = 0;
  std::string subprotocol;
  std::string path, key, protocols, ws_version;
  std::uint32_t headers = 0;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{status " << static_cast<int>(o.status) << ", error " << o.error_status << " '" << o.error_reason
            << "', consumed " << o.consumed << ", decided " << o.decided << ", subprotocol '" << o.subprotocol
            << "', path '" << o.path << "', headers " << o.headers << "}";
}

Outcome feed_pieces(const RequestCase& c, const std::vector<std::size_t>& cuts) {
  const std::string all = c.input + c.trailing;
  const auto bytes = std::span(reinterpret_cast<const std::uint8_t*>(all.data()), all.size());
  UpgradeParser p(c.limits);
  Outcome o;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : bytes.size();
    const UpgradeParser::Result r = p.feed(bytes.subspan(from, to - from));
    EXPECT_LE(r.consumed, to - from);
    o.consumed += r.consumed;
    o.status = r.status;
    if (r.status != Status::need_more) break;
    EXPECT_EQ(r.consumed, to - from) << "need_more must consume the whole feed";
    from = to;
  }
  if (o.status == Status::error) {
    o.error_status = p.error_status();
    o.error_reason = p.error_reason();
  }
  if (o.status == Status::complete) {
    const Decision d = decide(p, policy);
    o.decided = d.status;
    o.subprotocol = d.subprotocol;
    if (d.status != 101) {
      EXPECT_FALSE(d.reason.empty());
    }
  }
  o.path = p.path();
  o.key = p.key();
  o.protocols = p.protocols();
  o.ws_version = p.ws_version();
  o.headers = p.header_count();
  return o;
}

class Requests : public ::testing::TestWithParam<RequestCase> {};

// Feeds `c` whole, split in two at every byte and byte by byte; checks that
// all agree and that the whole outcome is the expected one.  Returns it.
Outcome check_every_split(const RequestCase& c) {
  const Outcome whole = feed_pieces(c, {});
  SCOPED_TRACE(::testing::PrintToString(whole));
  EXPECT_EQ(whole.status, c.status);
  if (whole.status != c.status) return whole;
  switch (c.status) {
    case Status::complete:
      EXPECT_EQ(whole.decided, c.http_status);
      EXPECT_EQ(whole.consumed, c.input.size()) << "trailing bytes must not be consumed";
      EXPECT_EQ(whole.subprotocol, c.subprotocol);
      break;
    case Status::error:
      EXPECT_EQ(whole.error_status, c.http_status);
      EXPECT_FALSE(whole.error_reason.empty());
      EXPECT_LE(whole.consumed, c.input.size());
      if (c.consumed) {
        EXPECT_EQ(whole.consumed, *c.consumed);
      }
      break;
    case Status::need_more:
      EXPECT_EQ(whole.consumed, c.input.size());
      break;
  }

  const std::size_t n = c.input.size() + c.trailing.size();
  for (std::size_t k = 0; k <= n; ++k) EXPECT_EQ(feed_pieces(c, {k}), whole) << "split at " << k;
  std::vector<std::size_t> every;
  for (std::size_t k = 1; k < n; ++k) every.push_back(k);
  EXPECT_EQ(feed_pieces(c, every), whole) << "byte by byte";
  return whole;
}

TEST_P(Requests, WholeSplitAndByteByByteAgree) { check_every_split(GetParam()); }

// The rules shared with the admin parser (tests/unit/http_rule_cases.h): the
// same status, reason and position.
class UpgradeSharedRules : public ::testing::TestWithParam<rg::test::HttpRuleCase> {};

TEST_P(UpgradeSharedRules, RefusedWithTheirReason) {
  const rg::test::HttpRuleCase& r = GetParam();
  const Outcome whole = check_every_split({r.name, r.input, Status::error, r.status, {}, {}, {}, r.consumed});
  EXPECT_EQ(whole.error_reason, r.reason);
}

INSTANTIATE_TEST_SUITE_P(Table, UpgradeSharedRules, ::testing::ValuesIn(rg::test::http_rule_cases()),
                         [](const ::testing::TestParamInfo<rg::test::HttpRuleCase>& i) { return i.param.name; });

std::vector<RequestCase> request_cases() {
  const std::string ok = base_request();
  std::vector<RequestCase> c = {
      // ---- accepted
      {"minimal", ok, Status::complete, 101},
      {"browser_like",
       request("GET /echo HTTP/1.1",
               {"Host: server.example.com:8080", "Connection: keep-alive, Upgrade", "Pragma: no-cache",
                "Cache-Control: no-cache",
                "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/120.0.0.0 Safari/537.36",
                "Upgrade: websocket", "Origin: http://example.com", "Sec-WebSocket-Version: 13",
                "Accept-Encoding: gzip, deflate, br", "Accept-Language: en-US,en;q=0.9",
                "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"}),
       Status::complete, 101},
      {"query_string", base_request("GET /echo?token=abc&x=1 HTTP/1.1"), Status::complete, 101},
      {"empty_query", base_request("GET /echo? HTTP/1.1"), Status::complete, 101},
      // A query longer than the stored path (e.g. a JWT) does not make the path unroutable.
      {"long_query_string", base_request("GET /echo?token=" + std::string(1500, 't') + " HTTP/1.1"), Status::complete,
       101},
      {"header_names_case_insensitive",
       request("GET /echo HTTP/1.1", {"HOST: a", "upgrade: websocket", "CONNECTION: Upgrade",
                                      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==", "SEC-WEBSOCKET-VERSION: 13"}),
       Status::complete, 101},
      {"token_values_case_insensitive",
       request("GET /echo HTTP/1.1", plus(without("Upgrade"), {"Upgrade: WebSocket"})), Status::complete, 101},
      {"connection_token_list", request("GET /echo HTTP/1.1", replaced("Connection", "keep-alive, UPGRADE")),
       Status::complete, 101},
      {"upgrade_token_list", request("GET /echo HTTP/1.1", replaced("Upgrade", "foo/1, websocket")), Status::complete,
       101},
      {"whitespace_around_values",
       request("GET /echo HTTP/1.1", {"Host:a", "Upgrade: \twebsocket \t", "Connection:   Upgrade",
                                      "Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\t", "Sec-WebSocket-Version:  13 "}),
       Status::complete, 101},
      {"leading_empty_line", "\r\n" + ok, Status::complete, 101},
      {"leading_empty_lines", "\r\n\r\n" + ok, Status::complete, 101},
      {"trailing_ws_bytes", ok, Status::complete, 101, std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11)},
      {"trailing_second_request", ok, Status::complete, 101, ok},
      {"empty_header_value", request("GET /echo HTTP/1.1", plus(base_headers(), {"X-Empty:", "X-Blank:   "})),
       Status::complete, 101},
      {"long_untracked_header", request("GET /echo HTTP/1.1", plus(base_headers(), {"Cookie: " + std::string(3000, 'c')})),
       Status::complete, 101},
      {"long_header_name", request("GET /echo HTTP/1.1", plus(base_headers(), {std::string(40, 'X') + ": y"})),
       Status::complete, 101},
      {"header_name_prefix_of_ours",
       request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Keys: nope", "Hosts: x", "Upgrade-X: y"})),
       Status::complete, 101},
      {"obs_text_in_value", request("GET /echo HTTP/1.1", plus(base_headers(), {"X-Name: caf\xC3\xA9"})),
       Status::complete, 101},
      {"exactly_at_limits", ok, Status::complete, 101, {}, Limits{18 + 2, 200, 5}},
      // ---- subprotocols
      {"subprotocol_single", request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Protocol: chat"})),
       Status::complete, 101, {}, {}, "chat"},
      {"subprotocol_client_order",
       request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Protocol: foo, superchat ,chat"})),
       Status::complete, 101, {}, {}, "superchat"},
      {"subprotocol_two_headers",
       request("GET /echo HTTP/1.1",
               plus(base_headers(), {"Sec-WebSocket-Protocol: foo", "Sec-WebSocket-Protocol: v2.json, chat"})),
       Status::complete, 101, {}, {}, "v2.json"},
      {"subprotocol_none_matching",
       request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Protocol: mqtt, CHAT"})), Status::complete,
       101},
      {"subprotocol_empty_list", request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Protocol: , ,"})),
       Status::complete, 101},
      // ---- request line errors (parser, 400)
      {"double_space", base_request("GET  /echo HTTP/1.1"), Status::error, 400, {}, {}, {}, 5},
      {"leading_space", base_request(" GET /echo HTTP/1.1"), Status::error, 400, {}, {}, {}, 1},
      {"no_version", "GET /echo\r\nHost: a\r\n\r\n", Status::error, 400, {}, {}, {}, 10},
      {"version_garbage", base_request("GET /echo HTTX/1.1"), Status::error, 400, {}, {}, {}, 19},
      {"version_short", base_request("GET /echo HTTP/1"), Status::error, 400, {}, {}, {}, 17},
      {"version_extra_token", base_request("GET /echo HTTP/1.1 x"), Status::error, 400, {}, {}, {}, 19},
      {"cr_without_lf", "GET /echo HTTP/1.1\rHost: a\r\n\r\n", Status::error, 400, {}, {}, {}, 20},
      {"method_bad_char", base_request("GE(T /echo HTTP/1.1"), Status::error, 400, {}, {}, {}, 3},
      {"path_control_char", base_request("GET /ec\x01ho HTTP/1.1"), Status::error, 400, {}, {}, {}, 8},
      {"path_non_ascii", base_request("GET /\xC3\xA9 HTTP/1.1"), Status::error, 400, {}, {}, {}, 6},
      {"nul_in_method", std::string("G\0T /echo HTTP/1.1\r\n\r\n", 22), Status::error, 400, {}, {}, {}, 2},
      // ---- header errors (parser, 400)
      {"header_without_colon", request("GET /echo HTTP/1.1", plus(base_headers(), {"NoColonHere"})), Status::error,
       400},
      // Lines end with CRLF only (the rules both parsers share: UpgradeSharedRules below).
      {"bare_lf", request("GET /echo HTTP/1.1", base_headers(), "\n"), Status::error, 400, {}, {}, {}, 19},
      {"mixed_line_endings", "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\nConnection: Upgrade\r\n\r\n",
       Status::error, 400, {}, {}, {}, 48},
      {"leading_empty_lines_lf", "\r\n\n" + ok, Status::error, 400, {}, {}, {}, 3},
      {"header_without_colon_last", request("GET /echo HTTP/1.1", {"Host: a", "Broken"}), Status::error, 400, {}, {},
       {}, 36},
      {"duplicate_authorization", request("GET /echo HTTP/1.1", plus(base_headers(), {"Authorization: Bearer a",
                                                                                      "Authorization: Bearer b"})),
       Status::error, 400},
      {"duplicate_content_length",
       request("GET /echo HTTP/1.1", plus(base_headers(), {"Content-Length: 0", "Content-Length: 0"})), Status::error,
       400},
      {"obs_fold", request("GET /echo HTTP/1.1", {"Host: a", "X-Long: one", " two"}), Status::error, 400, {}, {}, {},
       43},
      {"obs_fold_tab", request("GET /echo HTTP/1.1", {"Host: a", "X-Long: one", "\ttwo"}), Status::error, 400},
      {"whitespace_before_first_header", "GET /echo HTTP/1.1\r\n Host: a\r\n\r\n", Status::error, 400, {}, {}, {}, 21},
      {"space_before_colon", request("GET /echo HTTP/1.1", {"Host : a"}), Status::error, 400, {}, {}, {}, 25},
      {"empty_header_name", request("GET /echo HTTP/1.1", {": value"}), Status::error, 400, {}, {}, {}, 21},
      {"control_char_in_value", request("GET /echo HTTP/1.1", plus(base_headers(), {"X-A: a\x01z"})), Status::error,
       400},
      {"del_in_value", request("GET /echo HTTP/1.1", plus(base_headers(), {"X-A: a\x7Fz"})), Status::error, 400},
      {"cr_in_value", "GET /echo HTTP/1.1\r\nHost: a\rb\r\n\r\n", Status::error, 400, {}, {}, {}, 29},
      {"bad_end_of_headers", "GET /echo HTTP/1.1\r\nHost: a\r\n\rX", Status::error, 400, {}, {}, {}, 31},
      {"duplicate_host", request("GET /echo HTTP/1.1", plus(base_headers(), {"Host: b"})), Status::error, 400},
      {"tracked_value_too_long", request("GET /echo HTTP/1.1", replaced("Upgrade", std::string(1100, 'w'))),
       Status::error, 400},
      {"protocols_too_long",
       request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Protocol: " + std::string(300, 'p'),
                                                            "Sec-WebSocket-Protocol: " + std::string(300, 'q')})),
       Status::error, 400},
      // ---- limits
      {"request_line_too_long", base_request("GET /echo?" + std::string(100, 'q') + " HTTP/1.1"), Status::error, 414,
       {}, Limits{64, 32 * 1024, 100}, {}, 65},
      {"request_line_limit_counts_crlf", ok, Status::error, 414, {}, Limits{19, 32 * 1024, 100}, {}, 20},
      {"too_many_headers", request("GET /echo HTTP/1.1", plus(base_headers(), {"X-A: 1"})), Status::error, 431, {},
       Limits{8192, 32 * 1024, 5}},
      {"too_many_headers_default",
       [] {
         std::vector<std::string> hs = base_headers();
         for (int i = 0; i < 100; ++i) hs.push_back("X-H" + std::to_string(i) + ": v");
         return request("GET /echo HTTP/1.1", hs);
       }(),
       Status::error, 431},
      {"header_bytes_too_large", base_request(), Status::error, 431, {}, Limits{8192, 64, 100}, {}, 20 + 65},
      // ---- incomplete
      {"incomplete_request_line", "GET /echo HTT", Status::need_more, 0},
      {"incomplete_headers", "GET /echo HTTP/1.1\r\nHost: a\r\n", Status::need_more, 0},
      {"incomplete_final_cr", "GET /echo HTTP/1.1\r\nHost: a\r\n\r", Status::need_more, 0},
      {"only_empty_lines", "\r\n\r\n", Status::need_more, 0},
      {"only_empty_lines_then_lf", "\r\n\r\n\n", Status::error, 400, {}, {}, {}, 5},
      // ---- decide(): route, method, version
      {"unknown_path", base_request("GET /chat HTTP/1.1"), Status::complete, 404},
      {"path_trailing_slash", base_request("GET /echo/ HTTP/1.1"), Status::complete, 404},
      {"path_case_differs", base_request("GET /ECHO HTTP/1.1"), Status::complete, 404},
      {"path_prefix", base_request("GET /ech HTTP/1.1"), Status::complete, 404},
      {"absolute_form", base_request("GET http://example.com/echo HTTP/1.1"), Status::complete, 404},
      {"path_too_long", base_request("GET /" + std::string(1100, 'a') + " HTTP/1.1"), Status::complete, 404},
      {"post", base_request("POST /echo HTTP/1.1"), Status::complete, 405},
      {"lowercase_get", base_request("get /echo HTTP/1.1"), Status::complete, 405},
      {"long_method", base_request(std::string(20, 'G') + " /echo HTTP/1.1"), Status::complete, 405},
      {"method_get_prefix_of_long", base_request("GETGETGETGETGETGETGET /echo HTTP/1.1"), Status::complete, 405},
      {"http_1_0", base_request("GET /echo HTTP/1.0"), Status::complete, 400},
      {"http_2_0", base_request("GET /echo HTTP/2.0"), Status::complete, 505},
      {"http_1_2", base_request("GET /echo HTTP/1.2"), Status::complete, 505},
      {"http_0_9", base_request("GET /echo HTTP/0.9"), Status::complete, 505},
      {"version_before_method", base_request("POST /chat HTTP/2.0"), Status::complete, 505},
      {"method_before_path", base_request("POST /chat HTTP/1.1"), Status::complete, 405},
      // ---- decide(): headers
      {"missing_host", request("GET /echo HTTP/1.1", without("Host")), Status::complete, 400},
      {"missing_upgrade", request("GET /echo HTTP/1.1", without("Upgrade")), Status::complete, 426},
      {"upgrade_h2c", request("GET /echo HTTP/1.1", replaced("Upgrade", "h2c")), Status::complete, 426},
      {"upgrade_websocket_substring", request("GET /echo HTTP/1.1", replaced("Upgrade", "websockets")),
       Status::complete, 426},
      {"missing_connection", request("GET /echo HTTP/1.1", without("Connection")), Status::complete, 400},
      {"connection_keep_alive", request("GET /echo HTTP/1.1", replaced("Connection", "keep-alive")), Status::complete,
       400},
      {"connection_upgrade_substring", request("GET /echo HTTP/1.1", replaced("Connection", "upgrades")),
       Status::complete, 400},
      {"missing_version", request("GET /echo HTTP/1.1", without("Sec-WebSocket-Version")), Status::complete, 426},
      {"version_8", request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Version", "8")), Status::complete, 426},
      {"version_13_long", request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Version", "13000000000")),
       Status::complete, 426},
      {"version_list", request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Version", "13, 8")), Status::complete,
       426},
      {"version_duplicate", request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Version: 13"})),
       Status::complete, 426},
      {"missing_key", request("GET /echo HTTP/1.1", without("Sec-WebSocket-Key")), Status::complete, 400},
      {"invalid_key_short", request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Key", "c2hvcnQ=")),
       Status::complete, 400},
      {"invalid_key_17_bytes",
       request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=")), Status::complete,
       400},
      {"invalid_key_long",
       request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==")),
       Status::complete, 400},
      {"duplicate_key",
       request("GET /echo HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="})),
       Status::complete, 400},
  };
  return c;
}

INSTANTIATE_TEST_SUITE_P(Table, Requests, ::testing::ValuesIn(request_cases()),
                         [](const ::testing::TestParamInfo<RequestCase>& i) { return i.param.name; });

// The default 32 KiB header limit: too big for the every-boundary table, so
// fed whole, in 1000-byte pieces and split around the limit.
TEST(UpgradeParser, DefaultHeaderBytesLimit) {
  const std::string line = "GET /echo HTTP/1.1\r\n";
  for (std::size_t cookie : {32 * 1024 - 200, 32 * 1024 + 1}) {
    const std::string req = request("GET /echo HTTP/1.1", plus(base_headers(), {"Cookie: " + std::string(cookie, 'c')}));
    const bool fits = req.size() - line.size() <= 32 * 1024;
    RequestCase c{"default_limit", req, fits ? Status::complete : Status::error, static_cast<std::uint16_t>(fits ? 101 : 431)};
    const Outcome whole = feed_pieces(c, {});
    EXPECT_EQ(whole.status, c.status) << cookie;
    if (!fits) {
      EXPECT_EQ(whole.error_status, 431);
      EXPECT_EQ(whole.consumed, line.size() + 32 * 1024 + 1) << "fails on the first byte over the limit";
    }
    std::vector<std::size_t> cuts;
    for (std::size_t k = 1000; k < req.size(); k += 1000) cuts.push_back(k);
    EXPECT_EQ(feed_pieces(c, cuts), whole);
    for (std::size_t k = line.size() + 32 * 1024 - 3; k <= line.size() + 32 * 1024 + 3; ++k)
      EXPECT_EQ(feed_pieces(c, {k}), whole) << k;
  }
}

TEST(UpgradeParser, ExposesParsedFields) {
  const std::string req =
      request("GET /echo?x=1 HTTP/1.1", plus(base_headers(), {"Sec-WebSocket-Protocol: a, b", "X-Other: 1"}));
  UpgradeParser p;
  const auto r = p.feed({reinterpret_cast<const std::uint8_t*>(req.data()), req.size()});
  ASSERT_EQ(r.status, Status::complete);
  EXPECT_EQ(r.consumed, req.size());
  EXPECT_EQ(p.method(), Method::get);
  EXPECT_EQ(p.path(), "/echo?x=1");
  EXPECT_FALSE(p.path_too_long());
  EXPECT_EQ(p.version(), "HTTP/1.1");
  EXPECT_TRUE(p.host_seen());
  EXPECT_TRUE(p.upgrade_seen());
  EXPECT_TRUE(p.upgrade_websocket());
  EXPECT_TRUE(p.connection_upgrade());
  EXPECT_EQ(p.key(), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(p.key_count(), 1);
  EXPECT_EQ(p.ws_version(), "13");
  EXPECT_EQ(p.ws_version_count(), 1);
  EXPECT_EQ(p.protocols(), "a, b");
  EXPECT_EQ(p.header_count(), 7u);
}

TEST(Decide, SubprotocolSelection) {
  struct Case {
    std::string offered;      // Sec-WebSocket-Protocol value, empty: header absent
    std::string server;       // policy.subprotocols
    std::string chosen;
  } cases[] = {
      {"", "chat", ""},
      {"chat", "", ""},
      {"chat", "chat", "chat"},
      {"a, b, c", "c,b", "b"},       // the client's order wins
      {"c, b", "b, c", "c"},
      {"x,y", "a, b", ""},
      {"Chat", "chat", ""},           // tokens are case-sensitive
      {" chat ", " chat ", "chat"},   // trimmed on both sides
      {"ch", "chat", ""},             // no prefix matches
      {"chat", "ch", ""},
      {",,b,,", ",b,", "b"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> hs = base_headers();
    if (!c.offered.empty()) hs.push_back("Sec-WebSocket-Protocol: " + c.offered);
    const std::string req = request("GET /echo HTTP/1.1", hs);
    UpgradeParser p;
    ASSERT_EQ(p.feed({reinterpret_cast<const std::uint8_t*>(req.data()), req.size()}).status, Status::complete);
    const Decision d = decide(p, UpgradePolicy{"/echo", c.server, ""});
    EXPECT_EQ(d.status, 101);
    EXPECT_EQ(d.subprotocol, c.chosen) << "offered '" << c.offered << "' server '" << c.server << "'";
  }
}

TEST(Decide, PathLimitAppliesToPathNotQuery) {
  const std::string long_path = "/" + std::string(path_bytes_max - 1, 'p');  // exactly path_bytes_max
  struct Case {
    std::string target;
    bool too_long;
    std::uint16_t status;
  } cases[] = {
      {long_path, false, 101},
      {long_path + "?" + std::string(2000, 'q'), false, 101},
      {long_path + "x", true, 404},
      {long_path + "x?q", true, 404},
      {"/echo?" + std::string(3000, 'q'), false, 404},
      {long_path + "?" + std::string(query_bytes_max + 10, 'q'), false, 101},
  };
  for (const auto& c : cases) {
    const std::string req = base_request("GET " + c.target + " HTTP/1.1");
    UpgradeParser p;
    ASSERT_EQ(p.feed({reinterpret_cast<const std::uint8_t*>(req.data()), req.size()}).status, Status::complete);
    EXPECT_EQ(p.path_too_long(), c.too_long) << c.target.size();
    EXPECT_EQ(decide(p, UpgradePolicy{long_path, "", ""}).status, c.status) << c.target.size();
  }
}

TEST(UpgradeParser, QueryIsKeptAfterThePathAndTruncationIsReported) {
  const std::string fits(target_bytes_max - 6, 'q');  // "/echo?" + this = target_bytes_max
  struct Case {
    std::string target;
    std::string query;
    bool truncated;
  } cases[] = {
      {"/echo", "", false},
      {"/echo?", "", false},
      {"/echo?channels=a,b&token=x.y.z", "channels=a,b&token=x.y.z", false},
      {"/echo?" + fits, fits, false},
      {"/echo?" + fits + "r", fits, true},
      {"/echo?" + std::string(8000, 't'), std::string(target_bytes_max - 6, 't'), true},
      {"/?a=b?c", "a=b?c", false},
  };
  for (const auto& c : cases) {
    const std::string req = base_request("GET " + c.target + " HTTP/1.1");
    // Split at every byte boundary: the query survives any segmentation.
    for (std::size_t cut = 0; cut <= req.size(); ++cut) {
      UpgradeParser p;
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(req.data());
      if (cut > 0) {
        ASSERT_EQ(p.feed({bytes, cut}).status, cut == req.size() ? Status::complete : Status::need_more);
      }
      if (cut < req.size()) {
        ASSERT_EQ(p.feed({bytes + cut, req.size() - cut}).status, Status::complete);
      }
      EXPECT_EQ(p.query(), c.query) << c.target.size() << " cut " << cut;
      EXPECT_EQ(p.query_truncated(), c.truncated) << c.target.size();
      EXPECT_FALSE(p.path_too_long());
    }
  }
}

TEST(Decide, EchoPathFromPolicy) {
  const std::string req = base_request("GET /?a=b HTTP/1.1");
  UpgradeParser p;
  ASSERT_EQ(p.feed({reinterpret_cast<const std::uint8_t*>(req.data()), req.size()}).status, Status::complete);
  EXPECT_EQ(decide(p, UpgradePolicy{"/", "", ""}).status, 101);
  EXPECT_EQ(decide(p, UpgradePolicy{"/echo", "", ""}).status, 404);
}

// ------------------------------------------------------------------ responses

std::string build_101(std::string_view key, std::string_view sub) {
  std::array<char, response_bytes_max> buf{};
  const std::size_t n = build_switching_protocols(buf, key, sub);
  return std::string(buf.data(), n);
}

TEST(Responses, SwitchingProtocolsExactBytes) {
  EXPECT_EQ(build_101("dGhlIHNhbXBsZSBub25jZQ==", ""),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "\r\n");
  EXPECT_EQ(build_101("dGhlIHNhbXBsZSBub25jZQ==", "chat"),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: chat\r\n"
            "\r\n");
}

TEST(Responses, SwitchingProtocolsLongestSubprotocolFits) {
  const std::string sub(64, 'p');  // config caps subprotocols at 64 characters
  const std::string r = build_101("dGhlIHNhbXBsZSBub25jZQ==", sub);
  EXPECT_NE(r.find("Sec-WebSocket-Protocol: " + sub + "\r\n\r\n"), std::string::npos);
}

struct ErrorCase {
  std::uint16_t status;
  std::string text;
  std::string reason;
  std::uint32_t retry_after;
};

class ErrorResponse : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ErrorResponse, WellFormed) {
  const ErrorCase& c = GetParam();
  std::array<char, response_bytes_max> buf{};
  const std::size_t n = build_error(buf, c.status, c.reason, c.retry_after);
  ASSERT_LE(n, response_bytes_max);
  const std::string r(buf.data(), n);
  SCOPED_TRACE(r);
  const std::string status_line = "HTTP/1.1 " + std::to_string(c.status) + " " + c.text + "\r\n";
  EXPECT_EQ(r.rfind(status_line, 0), 0u);
  EXPECT_EQ(status_text(c.status), c.text);

  const std::size_t end = r.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  const std::string head = r.substr(0, end + 2);
  const std::string body = r.substr(end + 4);
  auto header = [&](std::string_view name) -> std::optional<std::string> {
    const std::string key = "\r\n" + std::string(name) + ": ";
    const std::size_t at = head.find(key);
    if (at == std::string::npos) return std::nullopt;
    const std::size_t from = at + key.size();
    return head.substr(from, head.find("\r\n", from) - from);
  };
  ASSERT_TRUE(header("Content-Length"));
  EXPECT_EQ(*header("Content-Length"), std::to_string(body.size()));
  EXPECT_EQ(header("Connection"), "close");
  EXPECT_EQ(header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(body.rfind(std::to_string(c.status) + " " + c.text, 0), 0u);
  EXPECT_EQ(body.back(), '\n');
  if (!c.reason.empty()) {
    EXPECT_NE(body.find(c.reason.substr(0, 160)), std::string::npos);
  }
  EXPECT_EQ(header("Allow"), c.status == 405 ? std::optional<std::string>("GET") : std::nullopt);
  EXPECT_EQ(header("Sec-WebSocket-Version"), c.status == 426 ? std::optional<std::string>("13") : std::nullopt);
  EXPECT_EQ(header("Upgrade"), c.status == 426 ? std::optional<std::string>("websocket") : std::nullopt);
  EXPECT_EQ(header("Retry-After"),
            c.retry_after ? std::optional<std::string>(std::to_string(c.retry_after)) : std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(
    Statuses, ErrorResponse,
    ::testing::Values(ErrorCase{400, "Bad Request", "malformed request line", 0},
                      ErrorCase{403, "Forbidden", "", 0},
                      ErrorCase{404, "Not Found", "no WebSocket endpoint at this path", 0},
                      ErrorCase{405, "Method Not Allowed", "method not allowed", 0},
                      ErrorCase{408, "Request Timeout", "handshake timeout", 0},
                      ErrorCase{414, "URI Too Long", "request line too long", 0},
                      ErrorCase{426, "Upgrade Required", "unsupported Sec-WebSocket-Version", 0},
                      ErrorCase{429, "Too Many Requests", "slow down", 5},
                      ErrorCase{431, "Request Header Fields Too Large", std::string(300, 'r'), 0},
                      ErrorCase{431, "Request Header Fields Too Large", std::string(300, 'r'), 4294967295u},
                      ErrorCase{426, "Upgrade Required", std::string(200, 'u'), 4294967295u},
                      ErrorCase{500, "Internal Server Error", "", 0},
                      ErrorCase{503, "Service Unavailable", "server busy", 60},
                      ErrorCase{503, "Service Unavailable", "", 1},
                      ErrorCase{505, "HTTP Version Not Supported", "HTTP version not supported", 0},
                      ErrorCase{599, "Error", "unknown status", 0}),
    [](const ::testing::TestParamInfo<ErrorCase>& i) {
      return std::to_string(i.param.status) + "_" + std::to_string(i.index);
    });

}  // namespace

namespace {

struct RefusalCase {
  std::uint16_t status;
  std::string text;
};

class Refusal : public ::testing::TestWithParam<RefusalCase> {};

TEST_P(Refusal, JsonBodyRetryAfterAndLength) {
  const RefusalCase& c = GetParam();
  for (const std::uint32_t retry : {0u, 1u, 60u, 3600u}) {
    std::array<char, rg::proto::http::response_bytes_max> out{};
    const std::size_t n =
        rg::proto::http::build_refusal(out, c.status, "Server at maximum connection capacity", retry);
    const std::string r(out.data(), n);
    SCOPED_TRACE(r);
    EXPECT_EQ(r.rfind("HTTP/1.1 " + std::to_string(c.status) + " " + c.text + "\r\n", 0), 0u);
    EXPECT_NE(r.find("\r\nContent-Type: application/json\r\n"), std::string::npos);
    EXPECT_NE(r.find("\r\nRetry-After: " + std::to_string(retry) + "\r\n"), std::string::npos);
    EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos);
    const std::size_t body_at = r.find("\r\n\r\n") + 4;
    const std::string body = r.substr(body_at);
    EXPECT_EQ(body, "{\"error\":\"" + c.text + "\",\"message\":\"Server at maximum connection capacity\","
                    "\"retry_after_seconds\":" + std::to_string(retry) + "}\n");
    const std::size_t cl = r.find("Content-Length: ") + 16;
    EXPECT_EQ(std::stoul(r.substr(cl, r.find("\r\n", cl) - cl)), body.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Statuses, Refusal,
                         ::testing::Values(RefusalCase{503, "Service Unavailable"},
                                           RefusalCase{429, "Too Many Requests"}),
                         [](const auto& i) { return std::to_string(i.param.status); });


// ------------------------------------------------------------------ bearer tokens and routes

TEST(UpgradeParser, BearerTokenFromAuthorization) {
  const std::string jwt = "eyJhbGciOiJIUzI1NiJ9." + std::string(3000, 'p') + ".sig";
  struct Case {
    const char* name;
    std::vector<std::string> extra;
    Status status;
    std::string token;
    std::uint16_t error = 0;
  } cases[] = {
      {"none", {}, Status::complete, ""},
      {"bearer", {"Authorization: Bearer abc.def.ghi"}, Status::complete, "abc.def.ghi"},
      {"scheme_case", {"authorization: bEaReR   abc.def.ghi  "}, Status::complete, "abc.def.ghi"},
      {"long_jwt", {"Authorization: Bearer " + jwt}, Status::complete, jwt},
      {"basic", {"Authorization: Basic dXNlcjpwdw=="}, Status::complete, ""},
      {"bare_scheme", {"Authorization: Bearer"}, Status::complete, ""},
      {"duplicate", {"Authorization: Bearer a", "Authorization: Bearer b"}, Status::error, "", 400},
      {"too_long", {"Authorization: Bearer " + std::string(authorization_bytes_max, 'x')}, Status::error, "", 431},
  };
  for (const auto& c : cases) {
    const std::string req = request("GET /ws HTTP/1.1", plus(base_headers(), c.extra));
    // Split at every byte boundary (a sample of cuts for the long ones).
    const std::size_t step = req.size() > 1000 ? 97 : 1;
    for (std::size_t cut = 0; cut <= req.size(); cut += step) {
      UpgradeParser p;
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(req.data());
      Status st = Status::need_more;
      if (cut > 0) st = p.feed({bytes, cut}).status;
      if (st == Status::need_more && cut < req.size()) st = p.feed({bytes + cut, req.size() - cut}).status;
      ASSERT_EQ(st, c.status) << c.name << " cut " << cut;
      if (st == Status::error) {
        EXPECT_EQ(p.error_status(), c.error) << c.name;
        continue;
      }
      EXPECT_EQ(p.bearer_token(), c.token) << c.name << " cut " << cut;
    }
  }
}

TEST(Decide, PubsubRoute) {
  struct Case {
    const char* line;
    std::string_view pubsub_path;
    std::uint16_t status;
    Route route;
  } cases[] = {
      {"GET /echo HTTP/1.1", "/ws", 101, Route::echo},
      {"GET /ws HTTP/1.1", "/ws", 101, Route::pubsub},
      {"GET /ws?channels=a,b HTTP/1.1", "/ws", 101, Route::pubsub},
      {"GET /ws HTTP/1.1", "", 404, Route::echo},
      {"GET /wss HTTP/1.1", "/ws", 404, Route::echo},
  };
  for (const auto& c : cases) {
    const std::string req = base_request(c.line);
    UpgradeParser p;
    ASSERT_EQ(p.feed({reinterpret_cast<const std::uint8_t*>(req.data()), req.size()}).status, Status::complete);
    const Decision d = decide(p, UpgradePolicy{"/echo", "", c.pubsub_path});
    EXPECT_EQ(d.status, c.status) << c.line;
    if (d.status == 101) {
      EXPECT_EQ(d.route, c.route) << c.line;
    }
  }
}

}  // namespace
