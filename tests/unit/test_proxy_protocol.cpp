// PROXY protocol v2 parser (proto/proxy_protocol.h): a table of headers and
// non-headers, each fed whole, in two pieces split at every byte, and byte
// by byte, with the client's bytes after it; every feeding must agree on the
// verdict, the reason, the header and where the client's stream begins.

#include "proto/proxy_protocol.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using namespace rg::proto::proxy;
using rg::test::Bytes;
using rg::test::bytes;
using rg::test::hex;

struct Outcome {
  Parser::Status status = Parser::Status::need_more;
  std::size_t header_bytes = 0;  // where the client's stream begins (complete) or the byte that failed
  std::string reason;
  Header header;
};

// Feeds `input` in the pieces `cuts` makes; the pieces after a verdict are
// not fed (the server would stop there).
Outcome feed(const Bytes& input, const std::vector<std::size_t>& cuts) {
  Parser p;
  Outcome o;
  std::size_t from = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (const std::size_t to : ends) {
    if (to < from) continue;
    const Parser::Result r = p.feed(std::span(input).subspan(from, to - from));
    EXPECT_LE(r.consumed, to - from);
    if (r.status != Parser::Status::need_more) {
      o.status = r.status;
      o.header_bytes = from + r.consumed;
      o.reason = std::string(p.error_reason());
      if (r.status == Parser::Status::complete) o.header = p.header();
      return o;
    }
    EXPECT_EQ(r.consumed, to - from) << "need_more takes the whole piece";
    from = to;
  }
  return o;
}

Bytes v4_header(Command c = Command::proxy, Bytes tlvs = {}) {
  Header h;
  h.command = c;
  h.family = Family::inet;
  h.source_address = {192, 0, 2, 7};
  h.source_port = 51234;
  h.destination_address = {127, 0, 0, 1};
  h.destination_port = 443;
  Bytes out(fixed_bytes + 36 + tlvs.size() + 16);
  out.resize(encode(h, tlvs, out));
  return out;
}

Bytes v6_header() {
  Header h;
  h.command = Command::proxy;
  h.family = Family::inet6;
  h.source_address = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};
  h.source_port = 40000;
  h.destination_address[15] = 1;
  h.destination_port = 8080;
  Bytes out(fixed_bytes + 36);
  out.resize(encode(h, {}, out));
  return out;
}

Bytes raw(std::initializer_list<std::uint8_t> tail) {
  Bytes out;
  out.reserve(signature.size() + tail.size());  // (GCC 12 warns, wrongly, on insert() into a 12-byte vector)
  for (const std::uint8_t b : signature) out.push_back(b);
  for (const std::uint8_t b : tail) out.push_back(b);
  return out;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const Bytes client = bytes("GET /echo HTTP/1.1\r\n");

struct Case {
  std::string name;
  Bytes input;
  Parser::Status status;
  std::size_t header_bytes;  // complete: the header's length; error: bytes taken up to the verdict
  std::string reason_has;    // error: a part of the reason
  std::optional<std::string> source;  // complete: "a.b.c.d:port" or "v6:<first byte>:port", none if no source
};

std::string describe_source(const Header& h) {
  if (!h.has_source) return "none";
  if (h.family == Family::inet)
    return std::to_string(h.source_address[0]) + "." + std::to_string(h.source_address[1]) + "." +
           std::to_string(h.source_address[2]) + "." + std::to_string(h.source_address[3]) + ":" +
           std::to_string(h.source_port);
  return "v6:" + std::to_string(h.source_address[0]) + ":" + std::to_string(h.source_port);
}

std::vector<Case> cases() {
  const Bytes crc_tlv{0x04, 0x00, 0x04, 1, 2, 3, 4};  // PP2_TYPE_CRC32C, not checked
  const Bytes alpn_tlv{0x01, 0x00, 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  std::vector<Case> c = {
      {"tcp4", cat(v4_header(), client), Parser::Status::complete, 28, "", "192.0.2.7:51234"},
      {"tcp6", cat(v6_header(), client), Parser::Status::complete, 52, "", "v6:32:40000"},
      {"tcp4 with TLVs", cat(v4_header(Command::proxy, cat(crc_tlv, alpn_tlv)), client), Parser::Status::complete,
       28 + 7 + 11, "", "192.0.2.7:51234"},
      {"a TLV with an empty value", cat(v4_header(Command::proxy, Bytes{0xEE, 0, 0}), client),
       Parser::Status::complete, 31, "", "192.0.2.7:51234"},
      {"LOCAL (a health check) says no source", cat(v4_header(Command::local), client), Parser::Status::complete, 28,
       "", "none"},
      {"LOCAL UNSPEC, no addresses", cat(raw({0x20, 0x00, 0x00, 0x00}), client), Parser::Status::complete, 16, "",
       "none"},
      {"PROXY UNSPEC keeps the TCP peer", cat(raw({0x21, 0x00, 0x00, 0x00}), client), Parser::Status::complete, 16,
       "", "none"},
      {"UNIX addresses say no source", cat(cat(raw({0x21, 0x31, 0x00, 216}), Bytes(216, 0)), client),
       Parser::Status::complete, 232, "", "none"},
      {"header only, the client has sent nothing yet", v4_header(), Parser::Status::complete, 28, "",
       "192.0.2.7:51234"},
      // Refusals.
      {"an HTTP request where the header should be", client, Parser::Status::error, 1, "no PROXY protocol v2 header",
       std::nullopt},
      {"POST is not version 1", bytes("POST / HTTP/1.1\r\n"), Parser::Status::error, 2, "no PROXY protocol v2 header",
       std::nullopt},
      {"version 1", bytes("PROXY TCP4 192.0.2.7 127.0.0.1 51234 443\r\nGET"), Parser::Status::error, 6,
       "version 1 is not accepted", std::nullopt},
      {"TLS where the header should be", Bytes{0x16, 0x03, 0x01, 0x00, 0x10}, Parser::Status::error, 1,
       "no PROXY protocol v2 header", std::nullopt},
      {"the signature's last byte wrong", cat(Bytes(signature.begin(), signature.end() - 1), Bytes{0x0B, 0x21}),
       Parser::Status::error, 12, "no PROXY protocol v2 header", std::nullopt},
      {"version 1 in the version nibble", raw({0x11, 0x11, 0x00, 0x0C}), Parser::Status::error, 16,
       "version is not 2", std::nullopt},
      {"command 2", raw({0x22, 0x11, 0x00, 0x0C}), Parser::Status::error, 16, "neither LOCAL nor PROXY",
       std::nullopt},
      {"address family 4", raw({0x21, 0x41, 0x00, 0x0C}), Parser::Status::error, 16, "unknown address family",
       std::nullopt},
      {"transport 3", raw({0x21, 0x13, 0x00, 0x0C}), Parser::Status::error, 16, "unknown transport", std::nullopt},
      {"UDP", raw({0x21, 0x12, 0x00, 0x0C}), Parser::Status::error, 16, "datagram", std::nullopt},
      {"length under the IPv4 block", raw({0x21, 0x11, 0x00, 0x0B}), Parser::Status::error, 16,
       "shorter than its address family", std::nullopt},
      {"length under the IPv6 block", raw({0x21, 0x21, 0x00, 0x0C}), Parser::Status::error, 16,
       "shorter than its address family", std::nullopt},
      {"longer than 1024 bytes", raw({0x21, 0x11, 0x03, 0xF1}), Parser::Status::error, 16, "longer than the 1024",
       std::nullopt},
      {"a TLV past the header's end", cat(v4_header(Command::proxy, Bytes{0x01, 0x00, 0x05, 'a'}), client),
       Parser::Status::error, 31, "runs past the header's end", std::nullopt},
      {"a TLV header cut by the end", cat(v4_header(Command::proxy, Bytes{0x01, 0x00}), client),
       Parser::Status::error, 30, "cut by the header's end", std::nullopt},
  };
  return c;
}

void expect_case(const Case& c, const std::vector<std::size_t>& cuts, const std::string& how) {
  const Outcome o = feed(c.input, cuts);
  SCOPED_TRACE(c.name + ", " + how + ": " + hex(c.input));
  ASSERT_EQ(o.status, c.status) << o.reason;
  EXPECT_EQ(o.header_bytes, c.header_bytes);
  if (c.status == Parser::Status::error) {
    EXPECT_NE(o.reason.find(c.reason_has), std::string::npos) << o.reason;
  } else {
    EXPECT_EQ(describe_source(o.header), *c.source);
  }
}

TEST(ProxyProtocol, EveryCaseWholeSplitAtEveryByteAndByteByByte) {
  for (const Case& c : cases()) {
    expect_case(c, {}, "whole");
    for (std::size_t cut = 1; cut < c.input.size(); ++cut) expect_case(c, {cut}, "split at " + std::to_string(cut));
    std::vector<std::size_t> every;
    for (std::size_t at = 1; at < c.input.size(); ++at) every.push_back(at);
    expect_case(c, every, "byte by byte");
  }
}

TEST(ProxyProtocol, AnUnfinishedHeaderNeedsMore) {
  const Bytes h = v4_header(Command::proxy, Bytes{0x01, 0x00, 0x02, 'h', '2'});
  for (std::size_t n = 0; n < h.size(); ++n) {
    Parser p;
    const Parser::Result r = p.feed(std::span(h).first(n));
    EXPECT_EQ(r.status, Parser::Status::need_more) << n;
    EXPECT_EQ(r.consumed, n);
  }
  const Bytes v1 = bytes("PROXY ");
  for (std::size_t n = 0; n < v1.size(); ++n) {
    Parser p;
    EXPECT_EQ(p.feed(std::span(v1).first(n)).status, Parser::Status::need_more) << n;
  }
}

TEST(ProxyProtocol, EncodeAndParseAgreeOnEveryField) {
  Header h;
  h.command = Command::proxy;
  h.family = Family::inet6;
  for (std::size_t i = 0; i < 16; ++i) {
    h.source_address[i] = static_cast<std::uint8_t>(i * 7);
    h.destination_address[i] = static_cast<std::uint8_t>(255 - i);
  }
  h.source_port = 1;
  h.destination_port = 65535;
  const Bytes tlv{0x05, 0x00, 0x01, 'x'};
  Bytes out(fixed_bytes + 36 + tlv.size());
  ASSERT_EQ(encode(h, tlv, out), out.size());
  Parser p;
  const Parser::Result r = p.feed(out);
  ASSERT_EQ(r.status, Parser::Status::complete);
  EXPECT_EQ(r.consumed, out.size());
  const Header& got = p.header();
  EXPECT_TRUE(got.has_source);
  EXPECT_EQ(got.source_address, h.source_address);
  EXPECT_EQ(got.destination_address, h.destination_address);
  EXPECT_EQ(got.source_port, 1);
  EXPECT_EQ(got.destination_port, 65535);
  EXPECT_EQ(got.tlv_bytes, tlv.size());
  Bytes small(out.size() - 1);
  EXPECT_EQ(encode(h, tlv, small), 0u) << "no room: nothing written";
}

TEST(ProxyProtocol, LooksLikeProxyOnlyWhenTheStartIsWhole) {
  const struct {
    Bytes input;
    bool expect;
  } table[] = {
      {v4_header(), true},
      {Bytes(signature.begin(), signature.end()), true},
      {Bytes(signature.begin(), signature.end() - 1), false},
      {bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), true},
      {bytes("PROXY "), true},
      {bytes("PROXY"), false},
      {bytes("POST / HTTP/1.1\r\n"), false},
      {bytes("\r\n\r\nGET / HTTP/1.1\r\n"), false},
      {{}, false},
  };
  for (const auto& t : table) EXPECT_EQ(looks_like_proxy(t.input), t.expect) << hex(t.input);
}

}  // namespace
