// The head-grammar rules both request parsers share (proto/http_rules.h), as
// one table: each input breaks one rule, and the upgrade parser
// (test_http_upgrade.cpp) and the admin parser (test_http_request.cpp) must
// both refuse it with this status and this reason, fed whole, split in two at
// every byte and byte by byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "proto/http_rules.h"

namespace rg::test {

struct HttpRuleCase {
  std::string name;
  std::string input;
  std::uint16_t status;
  std::string_view reason;
  std::size_t consumed;  // bytes up to and including the one that breaks the rule
};

inline std::ostream& operator<<(std::ostream& os, const HttpRuleCase& c) { return os << c.name; }

inline std::vector<HttpRuleCase> http_rule_cases() {
  namespace reason = proto::http::reason;
  const std::string line = "GET /healthz HTTP/1.1\r\n";  // 23 bytes
  return {
      {"bare_lf_request_line", "GET /healthz HTTP/1.1\nHost: a\n\n", 400, reason::bare_lf, 22},
      {"bare_lf_header_line", line + "Host: a\nX: b\r\n\r\n", 400, reason::bare_lf, 31},
      {"bare_lf_end_of_head", line + "Host: a\r\n\n", 400, reason::bare_lf, 33},
      {"bare_lf_before_request", "\nGET /healthz HTTP/1.1\r\n\r\n", 400, reason::bare_lf, 1},
      {"bare_cr_in_value", line + "Host: a\rb\r\n\r\n", 400, reason::bare_cr, 32},
      {"bare_cr_request_line", "GET /healthz HTTP/1.1\rHost: a\r\n\r\n", 400, reason::bare_cr, 23},
      {"bare_cr_end_of_head", line + "Host: a\r\n\rX", 400, reason::bare_cr, 34},
      {"bare_cr_before_request", "\rGET /healthz HTTP/1.1\r\n\r\n", 400, reason::bare_cr, 2},
      {"nul_in_value", line + std::string("X-A: a\0b\r\n\r\n", 12), 400, reason::nul_in_value, 30},
      {"control_in_value", line + "X-A: a\x01z\r\n\r\n", 400, reason::control_in_value, 30},
      {"del_in_value", line + "X-A: a\x7Fz\r\n\r\n", 400, reason::control_in_value, 30},
      {"duplicate_host", line + "Host: a\r\nHost: b\r\n\r\n", 400, reason::duplicate_host, 37},
      {"duplicate_host_case", line + "Host: a\r\nhOST: a\r\n\r\n", 400, reason::duplicate_host, 37},
      {"duplicate_authorization", line + "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n", 400,
       reason::duplicate_authorization, 62},
      {"duplicate_content_length", line + "Content-Length: 0\r\nContent-Length: 0\r\n\r\n", 400,
       reason::duplicate_content_length, 57},
      {"obs_fold", line + "X-Long: one\r\n two\r\n\r\n", 400, reason::obs_fold, 37},
      {"space_before_colon", line + "Host : a\r\n\r\n", 400, reason::malformed_header_name, 28},
      {"header_without_colon", line + "Broken\r\n\r\n", 400, reason::header_without_colon, 30},
      {"empty_header_name", line + ": value\r\n\r\n", 400, reason::malformed_header_line, 24},
      {"nul_in_method", std::string("G\0T /healthz HTTP/1.1\r\n\r\n", 25), 400, reason::malformed_request_line, 2},
      {"control_in_target", "GET /heal\x01thz HTTP/1.1\r\n\r\n", 400, reason::malformed_request_line, 10},
      {"double_space", "GET  /healthz HTTP/1.1\r\n\r\n", 400, reason::malformed_request_line, 5},
      {"version_garbage", "GET /healthz HTTX/1.1\r\n\r\n", 400, reason::malformed_request_line, 22},
  };
}

}  // namespace rg::test
