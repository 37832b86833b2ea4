// Frame primitives: header encode/decode, masking, close payloads, and the
// FrameTracker fed whole, split in two at every byte boundary and byte by byte.

#include "proto/ws_frame.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using namespace rg::proto::ws;
using rg::test::Bytes;
using rg::test::FrameSpec;
using rg::test::hex;
namespace t = rg::test;

// ------------------------------------------------------------------ headers

struct HeaderCase {
  Opcode opcode;
  bool fin;
  std::uint64_t len;
  bool masked;
};

class HeaderRoundTrip : public ::testing::TestWithParam<HeaderCase> {};

TEST_P(HeaderRoundTrip, EncodeDecode) {
  const HeaderCase& c = GetParam();
  const std::array<std::uint8_t, 4> key{0xDE, 0xAD, 0xBE, 0xEF};
  std::array<std::uint8_t, header_size_max> buf{};
  const std::size_t n = encode_header(buf, c.opcode, c.fin, c.len, c.masked ? key.data() : nullptr);
  const std::size_t want_len = 2 + (c.len < 126 ? 0 : c.len <= 0xFFFF ? 2 : 8) + (c.masked ? 4 : 0);
  ASSERT_EQ(n, want_len);
  SCOPED_TRACE(hex({buf.data(), n}));

  const DecodeResult r = decode_header({buf.data(), n});
  ASSERT_EQ(r.status, DecodeStatus::ok);
  EXPECT_EQ(r.header.fin, c.fin);
  EXPECT_EQ(r.header.rsv, 0);
  EXPECT_EQ(r.header.opcode, static_cast<std::uint8_t>(c.opcode));
  EXPECT_EQ(r.header.masked, c.masked);
  EXPECT_EQ(r.header.payload_len, c.len);
  EXPECT_EQ(r.header.header_len, n);
  if (c.masked) {
    EXPECT_EQ(r.header.mask_key, key);
  }

  // Trailing payload bytes do not change the header.
  std::vector<std::uint8_t> longer(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
  longer.resize(n + 7, 0xAB);
  EXPECT_EQ(decode_header(longer).header.header_len, n);

  // Every strict prefix needs more.
  for (std::size_t k = 0; k < n; ++k)
    EXPECT_EQ(decode_header({buf.data(), k}).status, DecodeStatus::need_more) << "prefix " << k;
}

std::vector<HeaderCase> header_cases() {
  std::vector<HeaderCase> out;
  const std::uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1ull << 32, (1ull << 63) - 1};
  for (std::uint64_t len : lens)
    for (bool masked : {false, true})
      for (Opcode op : {Opcode::text, Opcode::binary, Opcode::continuation})
        for (bool fin : {true, false}) out.push_back({op, fin, len, masked});
  for (Opcode op : {Opcode::close, Opcode::ping, Opcode::pong})
    for (bool masked : {false, true}) out.push_back({op, true, 125, masked});
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, HeaderRoundTrip, ::testing::ValuesIn(header_cases()),
                         [](const ::testing::TestParamInfo<HeaderCase>& i) {
                           const HeaderCase& c = i.param;
                           return "op" + std::to_string(static_cast<int>(c.opcode)) + (c.fin ? "_fin" : "_nofin") +
                                  "_len" + std::to_string(c.len) + (c.masked ? "_masked" : "_unmasked");
                         });

TEST(DecodeHeader, BitsAreDecoded) {
  const Bytes b{0xF3, 0x85, 1, 2, 3, 4};  // fin, rsv=7, opcode 3, masked, len 5
  const DecodeResult r = decode_header(b);
  ASSERT_EQ(r.status, DecodeStatus::ok);
  EXPECT_TRUE(r.header.fin);
  EXPECT_EQ(r.header.rsv, 7);
  EXPECT_EQ(r.header.opcode, 3);
  EXPECT_TRUE(r.header.masked);
  EXPECT_EQ(r.header.payload_len, 5u);
  EXPECT_EQ(r.header.header_len, 6);
  EXPECT_EQ(r.header.mask_key, (std::array<std::uint8_t, 4>{1, 2, 3, 4}));
}

struct BadLengthCase {
  std::string name;
  Bytes header;  // without mask
  DecodeStatus expect;
};

void PrintTo(const BadLengthCase& c, std::ostream* os) { *os << c.name; }

class DecodeLength : public ::testing::TestWithParam<BadLengthCase> {};

TEST_P(DecodeLength, Validates) {
  const BadLengthCase& c = GetParam();
  for (bool masked : {false, true}) {
    Bytes h = c.header;
    if (masked) {
      h[1] |= 0x80;
      h.insert(h.end(), {9, 8, 7, 6});
    }
    SCOPED_TRACE(hex(h));
    EXPECT_EQ(decode_header(h).status, c.expect);
    // A bad length is reported as soon as the length bytes are in, before
    // the mask key; shorter prefixes need more.
    const std::size_t length_end = c.header.size();
    for (std::size_t k = 0; k < h.size(); ++k) {
      const DecodeStatus want =
          (k >= length_end && c.expect == DecodeStatus::bad_length) ? DecodeStatus::bad_length : DecodeStatus::need_more;
      EXPECT_EQ(decode_header({h.data(), k}).status, want) << "prefix " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Lengths, DecodeLength,
    ::testing::ValuesIn(std::vector<BadLengthCase>{
        {"len16_zero", {0x82, 126, 0, 0}, DecodeStatus::bad_length},
        {"len16_125", {0x82, 126, 0, 125}, DecodeStatus::bad_length},
        {"len16_126", {0x82, 126, 0, 126}, DecodeStatus::ok},
        {"len16_65535", {0x82, 126, 0xFF, 0xFF}, DecodeStatus::ok},
        {"len64_zero", {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}, DecodeStatus::bad_length},
        {"len64_125", {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 125}, DecodeStatus::bad_length},
        {"len64_65535", {0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, DecodeStatus::bad_length},
        {"len64_65536", {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, DecodeStatus::ok},
        {"len64_top_bit", {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, DecodeStatus::bad_length},
        {"len64_all_ones", {0x82, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, DecodeStatus::bad_length},
        {"len64_max_legal", {0x82, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, DecodeStatus::ok},
    }),
    [](const ::testing::TestParamInfo<BadLengthCase>& i) { return i.param.name; });

// ------------------------------------------------------------------ masking

void naive_mask(std::uint8_t* p, std::size_t n, std::array<std::uint8_t, 4> key, std::uint64_t offset) {
  for (std::size_t i = 0; i < n; ++i) p[i] ^= key[(offset + i) % 4];
}

Bytes pattern(std::size_t n, std::uint8_t seed = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 37 + (i >> 3));
  return b;
}

TEST(MaskBytes, MatchesNaiveLoopForAllLengthsAndOffsets) {
  const std::array<std::uint8_t, 4> key{0x12, 0x34, 0x56, 0x78};
  for (std::size_t len = 0; len <= 40; ++len)
    for (std::uint64_t offset : {0ull, 1ull, 2ull, 3ull, 4ull, 7ull, (1ull << 32) + 1, ~0ull})
      for (std::size_t align = 0; align < 8; ++align) {  // misaligned data pointers too
        Bytes a = pattern(len + align, static_cast<std::uint8_t>(len));
        Bytes b = a;
        mask_bytes({a.data() + align, len}, key, offset);
        naive_mask(b.data() + align, len, key, offset);
        ASSERT_EQ(a, b) << "len " << len << " offset " << offset << " align " << align;
      }
}

TEST(MaskBytes, PiecewiseEqualsWhole) {
  const std::array<std::uint8_t, 4> key{0xA1, 0xB2, 0xC3, 0xD4};
  for (std::size_t len = 0; len <= 40; ++len) {
    const Bytes plain = pattern(len, 3);
    Bytes whole = plain;
    mask_bytes(whole, key);
    for (std::size_t k = 0; k <= len; ++k) {
      Bytes pieces = plain;
      mask_bytes({pieces.data(), k}, key, 0);
      mask_bytes({pieces.data() + k, len - k}, key, k);
      ASSERT_EQ(pieces, whole) << "len " << len << " split " << k;
    }
    // Three pieces.
    for (std::size_t k = 0; k <= len; ++k)
      for (std::size_t m = k; m <= len; ++m) {
        Bytes pieces = plain;
        mask_bytes({pieces.data(), k}, key, 0);
        mask_bytes({pieces.data() + k, m - k}, key, k);
        mask_bytes({pieces.data() + m, len - m}, key, m);
        ASSERT_EQ(pieces, whole) << "len " << len << " splits " << k << "," << m;
      }
    // Masking twice is the identity.
    mask_bytes(whole, key);
    ASSERT_EQ(whole, plain);
  }
}

TEST(MaskBytes, LargeBufferMatchesNaive) {
  const std::array<std::uint8_t, 4> key{1, 2, 4, 8};
  Bytes a = pattern(65536 + 5);
  Bytes b = a;
  mask_bytes(a, key, 2);
  naive_mask(b.data(), b.size(), key, 2);
  EXPECT_EQ(a, b);
}

// ------------------------------------------------------------------ close payloads

struct ClosePayloadCase {
  std::string name;
  Bytes payload;
  ClosePayloadError expect;
};

class ClosePayload : public ::testing::TestWithParam<ClosePayloadCase> {};

TEST_P(ClosePayload, Checks) {
  EXPECT_EQ(check_close_payload(GetParam().payload), GetParam().expect) << hex(GetParam().payload);
}

std::vector<ClosePayloadCase> close_payload_cases() {
  std::vector<ClosePayloadCase> c = {
      {"empty", {}, ClosePayloadError::none},
      {"one_byte", {0x03}, ClosePayloadError::one_byte},
      {"code_1000_reason", t::close_payload(1000, "bye"), ClosePayloadError::none},
      {"code_1000_utf8_reason", t::close_payload(1000, "\xC3\xA9t\xC3\xA9"), ClosePayloadError::none},
      {"code_1000_bad_utf8", t::close_payload(1000, "\xFF"), ClosePayloadError::bad_utf8},
      {"code_1000_truncated_utf8", t::close_payload(1000, "ok\xE2\x82"), ClosePayloadError::bad_utf8},
      {"code_1000_surrogate", t::close_payload(1000, "\xED\xA0\x80"), ClosePayloadError::bad_utf8},
      {"bad_code_and_bad_utf8", t::close_payload(1005, "\xFF"), ClosePayloadError::bad_code},
  };
  struct CodeCase {
    std::uint16_t code;
    bool valid;
  };
  const CodeCase codes[] = {{0, false},    {999, false},  {1000, true},  {1001, true},  {1002, true},
                            {1003, true},  {1004, false}, {1005, false}, {1006, false}, {1007, true},
                            {1008, true},  {1009, true},  {1010, true},  {1011, true},  {1012, true},
                            {1013, true},  {1014, true},  {1015, false}, {1016, false}, {1100, false},
                            {2000, false}, {2999, false}, {3000, true},  {3999, true},  {4000, true},
                            {4999, true},  {5000, false}, {65535, false}};
  for (const auto& cc : codes) {
    c.push_back({"code_" + std::to_string(cc.code), t::close_payload(cc.code),
                 cc.valid ? ClosePayloadError::none : ClosePayloadError::bad_code});
    EXPECT_EQ(close_code_valid_on_wire(cc.code), cc.valid) << cc.code;
  }
  return c;
}

INSTANTIATE_TEST_SUITE_P(Table, ClosePayload, ::testing::ValuesIn(close_payload_cases()),
                         [](const ::testing::TestParamInfo<ClosePayloadCase>& i) { return i.param.name; });

// ------------------------------------------------------------------ FrameTracker

// When a violation becomes detectable: the tracker must report it in the
// feed that brings in that byte, not later (wslay would see the frame first)
// and not earlier.
enum class Detect {
  two_bytes,  // mask bit, RSV, opcode, fragmentation, control size/FIN
  length,     // non-minimal or top-bit length: once the length bytes are in
  header,     // message size: once the whole header is in
  frame_end,  // close payload: once the whole frame is in
};

struct Violation {
  std::size_t item;      // index of the offending frame in the stream
  std::uint16_t code;
  std::string reason;
  Detect detect;
};

// A stream is a list of wire items: encoded frames, or raw bytes (malformed
// headers, or a partial frame at the end).
struct TrackerCase {
  std::string name;
  std::vector<Bytes> items;
  std::optional<Violation> violation;
  bool boundary_at_end = true;  // for streams without violation
  std::uint64_t max_message = UINT64_MAX;
  std::uint64_t max_frame = UINT64_MAX;
};

std::ostream& operator<<(std::ostream& os, const TrackerCase& c) { return os << c.name; }

// Header length straight from the wire bits (independent of decode_header).
std::size_t wire_header_len(const Bytes& b) {
  if (b.size() < 2) return SIZE_MAX;
  const int len7 = b[1] & 0x7F;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b[1] & 0x80) ? 4 : 0);
}

std::size_t wire_length_end(const Bytes& b) {
  if (b.size() < 2) return SIZE_MAX;
  const int len7 = b[1] & 0x7F;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

struct Stream {
  Bytes bytes;
  std::vector<std::size_t> offset;
  std::vector<std::size_t> length_end;
  std::vector<std::size_t> header_end;
  std::vector<std::size_t> end;
  std::size_t complete_headers = 0;  // up to the first close frame
  std::optional<std::size_t> close_item;  // the first close frame

  std::size_t detect_at(const Violation& v) const {
    switch (v.detect) {
      case Detect::two_bytes: return offset[v.item] + 2;
      case Detect::length: return length_end[v.item];
      case Detect::header: return header_end[v.item];
      case Detect::frame_end: return end[v.item];
    }
    return SIZE_MAX;
  }
};

Stream build(const TrackerCase& c) {
  Stream s;
  for (const Bytes& item : c.items) {
    s.offset.push_back(s.bytes.size());
    const std::size_t hl = wire_header_len(item);
    s.length_end.push_back(s.bytes.size() + wire_length_end(item));
    s.header_end.push_back(hl == SIZE_MAX ? SIZE_MAX : s.bytes.size() + hl);
    if (hl <= item.size() && !s.close_item) ++s.complete_headers;
    if (!item.empty() && (item[0] & 0x0F) == 0x8 && !s.close_item) s.close_item = s.offset.size() - 1;
    t::append(s.bytes, item);
    s.end.push_back(s.bytes.size());
  }
  return s;
}

class Tracker : public ::testing::TestWithParam<TrackerCase> {
 protected:
  // Feeds the stream cut at `cuts` and checks every verdict against the case:
  // no verdict before the violation is detectable, then exactly one with the
  // right code, reason and valid_prefix (relative to the failing feed).
  void run(const Stream& s, const std::vector<std::size_t>& cuts, const std::string& how) {
    const TrackerCase& c = GetParam();
    SCOPED_TRACE(how);
    FrameTracker tr(c.max_message, c.max_frame);
    std::size_t from = 0;
    bool failed = false;
    const std::size_t detect = c.violation ? s.detect_at(*c.violation) : SIZE_MAX;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
      const std::size_t to = i < cuts.size() ? cuts[i] : s.bytes.size();
      const FrameTracker::Verdict v = tr.feed(std::span(s.bytes).subspan(from, to - from));
      if (failed) {
        EXPECT_FALSE(v.ok) << "tracker recovered after a violation";
      } else if (to < detect) {
        ASSERT_TRUE(v.ok) << "early violation in feed [" << from << "," << to << "): " << v.reason;
      } else {
        ASSERT_FALSE(v.ok) << "violation not reported in feed [" << from << "," << to << ")";
        const std::size_t off = s.offset[c.violation->item];
        // Absolute offset of the offending frame = bytes fed before + valid_prefix,
        // unless the frame began in an earlier feed (then valid_prefix is 0).
        EXPECT_EQ(from + v.valid_prefix, std::max(off, from)) << "feed [" << from << "," << to << ")";
        EXPECT_EQ(v.close_code, c.violation->code);
        EXPECT_EQ(v.reason, c.violation->reason);
        failed = true;
      }
      if (!failed && s.close_item) {
        // The first close frame: where it began in this feed, and its payload.
        const std::size_t off = s.offset[*s.close_item];
        EXPECT_EQ(tr.close_started(), to > off);
        if (to > off) {
          EXPECT_EQ(tr.close_offset(), std::max(off, from) - from);
        }
        const Bytes& item = GetParam().items[*s.close_item];
        const std::size_t frame_end = off + wire_header_len(item) + (item[1] & 0x7F);  // close: 7-bit length
        EXPECT_EQ(tr.close_complete(), to >= frame_end);
      }
      from = to;
    }
    if (!c.violation && s.close_item) {
      // Unmasked payload: the encoded frame's payload XOR its mask.
      const Bytes& item = c.items[*s.close_item];
      const std::size_t hl = wire_header_len(item);
      Bytes payload(item.begin() + static_cast<std::ptrdiff_t>(hl), item.end());
      mask_bytes(payload, {item[hl - 4], item[hl - 3], item[hl - 2], item[hl - 1]});
      if (tr.close_complete()) {
        EXPECT_EQ(Bytes(tr.close_payload().begin(), tr.close_payload().end()), payload);
      }
    }
    if (!s.close_item || !tr.close_complete()) {
      EXPECT_TRUE(tr.close_payload().empty());
    }
    if (!c.violation) {
      EXPECT_EQ(tr.at_message_boundary(), c.boundary_at_end);
      EXPECT_EQ(tr.frames_seen(), s.complete_headers);
    } else {
      ASSERT_TRUE(failed);
      const FrameTracker::Verdict again = tr.feed(t::encode_frame(t::text("x")));
      EXPECT_FALSE(again.ok) << "stays failed";
      EXPECT_FALSE(tr.feed({}).ok) << "stays failed on an empty feed";
    }
  }
};

TEST_P(Tracker, Whole) { run(build(GetParam()), {}, "whole"); }

TEST_P(Tracker, SplitAtEveryBoundary) {
  const Stream s = build(GetParam());
  for (std::size_t k = 0; k <= s.bytes.size(); ++k) run(s, {k}, "split at " + std::to_string(k));
}

TEST_P(Tracker, ByteByByte) {
  const Stream s = build(GetParam());
  std::vector<std::size_t> cuts;
  for (std::size_t k = 1; k < s.bytes.size(); ++k) cuts.push_back(k);
  run(s, cuts, "byte by byte");
}

TEST_P(Tracker, WithEmptyFeeds) {
  const Stream s = build(GetParam());
  std::vector<std::size_t> cuts;
  for (std::size_t k = 0; k <= s.bytes.size(); k += 3) {
    cuts.push_back(k);
    cuts.push_back(k);
  }
  run(s, cuts, "every 3 bytes with empty feeds");
}

constexpr const char* r_unmasked = "client frames must be masked";
constexpr const char* r_rsv = "reserved bits set but no extension was negotiated";
constexpr const char* r_cont = "continuation frame without a message to continue";
constexpr const char* r_nested = "new data frame inside a fragmented message";
constexpr const char* r_ctl_big = "control frame payload over 125 bytes";
constexpr const char* r_ctl_frag = "fragmented control frame";
constexpr const char* r_opcode = "reserved opcode";
constexpr const char* r_big = "message larger than max_message_size";
constexpr const char* r_frame_big = "frame larger than max_frame_size";
constexpr const char* r_len = "invalid payload length encoding";
constexpr const char* r_close1 = "close payload of one byte";
constexpr const char* r_code = "invalid close code";
constexpr const char* r_utf8 = "close reason is not valid UTF-8";

Bytes F(const FrameSpec& f) { return t::encode_frame(f); }
Bytes raw(std::uint8_t opcode, bool fin, std::size_t len) { return F({opcode, fin, Bytes(len, 'x')}); }

std::vector<TrackerCase> tracker_cases() {
  using t::binary;
  using t::close_frame;
  using t::cont;
  using t::ping;
  using t::pong;
  using t::text;
  using t::unmasked;
  using t::with_rsv;
  const Bytes mask{1, 2, 3, 4};
  auto with_mask = [&](Bytes h) {
    h[1] |= 0x80;
    t::append(h, mask);
    return h;
  };
  return {
      // ---- valid streams
      {"empty_stream", {}, {}},
      {"one_text", {F(text("hello"))}, {}},
      {"empty_text", {F(text(""))}, {}},
      {"binary_126", {F(binary(Bytes(126, 7)))}, {}},
      {"binary_65535", {F(binary(Bytes(65535, 7)))}, {}},
      {"binary_65536", {F(binary(Bytes(65536, 7)))}, {}},
      {"several_messages", {F(text("a")), F(binary(Bytes(300, 1))), F(text("")), F(text("zz"))}, {}},
      {"fragmented_text", {F(text("Hel", false)), F(cont("l", false)), F(cont("o"))}, {}},
      {"fragmented_empty_pieces", {F(text("", false)), F(cont("", false)), F(cont(""))}, {}},
      {"fragmented_with_control",
       {F(text("Hel", false)), F(ping("p")), F(cont("l", false)), F(pong("")), F(cont("o"))},
       {}},
      {"stream_ends_mid_message", {F(text("Hel", false)), F(cont("l", false))}, {}, false},
      {"ping_125", {F(ping(std::string(125, 'p')))}, {}},
      {"pong_empty", {F(pong(""))}, {}},
      {"close_empty", {F(close_frame(Bytes{}))}, {}},
      {"close_1000", {F(close_frame(1000))}, {}},
      {"close_1000_reason", {F(close_frame(1000, "bye"))}, {}},
      {"close_utf8_reason", {F(close_frame(1001, "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80"))}, {}},
      {"close_1012", {F(close_frame(1012))}, {}},
      {"close_3000", {F(close_frame(3000))}, {}},
      {"close_4999_max_reason", {F(close_frame(4999, std::string(123, 'r')))}, {}},
      // The first close frame ends the stream: nothing after it is examined.
      {"close_then_more", {F(close_frame(1000)), F(text("after"))}, {}},
      {"close_then_violation", {F(text("x")), F(close_frame(1001, "bye")), F(unmasked(text("no"))), Bytes{0xFF, 0x00}},
       {}},
      {"close_then_bad_close", {F(close_frame(Bytes{})), F(close_frame(Bytes{1}))}, {}},
      {"close_inside_fragmented", {F(text("a", false)), F(close_frame(1000)), F(cont("b"))}, {}, false},
      {"message_at_max", {F(text("0123456789"))}, {}, true, 10},
      {"fragments_at_max", {F(text("01234", false)), F(cont("56789"))}, {}, true, 10},
      {"max_resets_per_message", {F(text("01234567")), F(text("01234567")), F(binary(Bytes(10, 0)))}, {}, true, 10},
      {"control_not_counted", {F(text("0123456789", false)), F(ping("ppppppppppppppp")), F(cont(""))}, {}, true, 10},
      {"partial_header_at_end", {F(text("abc")), Bytes{0x81}}, {}, false},
      {"partial_ext_len_at_end", {F(text("abc")), Bytes{0x82, 0xFE, 0x01}}, {}, false},
      {"partial_payload_at_end", {F(text("abc")), Bytes{0x81, 0x85, 1, 2, 3, 4, 'a'}}, {}, false},
      {"partial_close_payload_at_end", {Bytes{0x88, 0x85, 1, 2, 3, 4, 0x03}}, {}, false},
      // ---- violations: masking, RSV, opcodes
      {"unmasked_first", {F(unmasked(text("hi")))}, Violation{0, 1002, r_unmasked, Detect::two_bytes}},
      {"unmasked_after_valid", {F(text("a")), F(ping("b")), F(unmasked(text("hi")))},
       Violation{2, 1002, r_unmasked, Detect::two_bytes}},
      {"unmasked_close", {F(text("a")), F(unmasked(close_frame(1000)))}, Violation{1, 1002, r_unmasked, Detect::two_bytes}},
      {"unmasked_len16", {F(unmasked(binary(Bytes(200, 1))))}, Violation{0, 1002, r_unmasked, Detect::two_bytes}},
      {"rsv1", {F(with_rsv(text("hi"), 4))}, Violation{0, 1002, r_rsv, Detect::two_bytes}},
      {"rsv2", {F(text("ok")), F(with_rsv(text("hi"), 2))}, Violation{1, 1002, r_rsv, Detect::two_bytes}},
      {"rsv3", {F(with_rsv(binary(Bytes(200, 1)), 1))}, Violation{0, 1002, r_rsv, Detect::two_bytes}},
      {"rsv_on_ping", {F(with_rsv(ping(""), 7))}, Violation{0, 1002, r_rsv, Detect::two_bytes}},
      {"opcode_3", {raw(0x3, true, 2)}, Violation{0, 1002, r_opcode, Detect::two_bytes}},
      {"opcode_7", {F(text("x")), raw(0x7, true, 0)}, Violation{1, 1002, r_opcode, Detect::two_bytes}},
      {"opcode_b", {raw(0xB, true, 1)}, Violation{0, 1002, r_opcode, Detect::two_bytes}},
      {"opcode_f", {raw(0xF, true, 300)}, Violation{0, 1002, r_opcode, Detect::two_bytes}},
      {"opcode_b_mid_message", {F(text("a", false)), raw(0xB, true, 0)}, Violation{1, 1002, r_opcode, Detect::two_bytes}},
      // ---- control frames
      {"ping_126", {F(ping(std::string(126, 'p')))}, Violation{0, 1002, r_ctl_big, Detect::two_bytes}},
      {"pong_126", {F(text("a")), F(pong(std::string(126, 'p')))}, Violation{1, 1002, r_ctl_big, Detect::two_bytes}},
      {"close_126", {F(close_frame(1000, std::string(124, 'r')))}, Violation{0, 1002, r_ctl_big, Detect::two_bytes}},
      {"ping_65536", {raw(0x9, true, 65536)}, Violation{0, 1002, r_ctl_big, Detect::two_bytes}},
      {"ping_fragmented", {raw(0x9, false, 3)}, Violation{0, 1002, r_ctl_frag, Detect::two_bytes}},
      {"close_fragmented", {F(text("a")), raw(0x8, false, 0)}, Violation{1, 1002, r_ctl_frag, Detect::two_bytes}},
      {"pong_fragmented_mid_message", {F(text("a", false)), raw(0xA, false, 0)},
       Violation{1, 1002, r_ctl_frag, Detect::two_bytes}},
      // ---- fragmentation
      {"continuation_first", {F(cont("x"))}, Violation{0, 1002, r_cont, Detect::two_bytes}},
      {"continuation_after_complete", {F(text("a")), F(cont("b"))}, Violation{1, 1002, r_cont, Detect::two_bytes}},
      {"continuation_after_finished_fragments", {F(text("a", false)), F(cont("b")), F(cont("c"))},
       Violation{2, 1002, r_cont, Detect::two_bytes}},
      {"text_inside_fragmented", {F(text("a", false)), F(text("b"))}, Violation{1, 1002, r_nested, Detect::two_bytes}},
      {"binary_inside_fragmented", {F(binary(Bytes{1}, false)), F(ping("")), F(binary(Bytes{2}, false))},
       Violation{2, 1002, r_nested, Detect::two_bytes}},
      // ---- sizes
      {"message_over_max", {F(text("0123456789A"))}, Violation{0, 1009, r_big, Detect::header}, true, 10},
      {"second_message_over_max", {F(text("0123456789")), F(text("0123456789A"))},
       Violation{1, 1009, r_big, Detect::header}, true, 10},
      {"fragments_over_max", {F(text("012345", false)), F(cont("6789", false)), F(cont("A"))},
       Violation{2, 1009, r_big, Detect::header}, true, 10},
      {"binary_70000_over_64k", {F(binary(Bytes(70000, 1)))}, Violation{0, 1009, r_big, Detect::header}, true, 65536},
      {"max_zero_rejects_nonempty", {F(text("")), F(text("a"))}, Violation{1, 1009, r_big, Detect::header}, true, 0},
      {"frame_over_max_frame", {F(text("0123456789A"))}, Violation{0, 1009, r_frame_big, Detect::header}, true,
       UINT64_MAX, 10},
      {"frame_at_max_frame", {F(text("0123456789"))}, {}, true, UINT64_MAX, 10},
      {"fragments_each_within_max_frame", {F(text("01234", false)), F(cont("56789", false)), F(cont("ABCDE"))}, {},
       true, UINT64_MAX, 5},
      {"second_fragment_over_max_frame", {F(text("01234", false)), F(cont("567890"))},
       Violation{1, 1009, r_frame_big, Detect::header}, true, UINT64_MAX, 5},
      {"control_frames_not_bound_by_max_frame", {F(ping("0123456789"))}, {}, true, UINT64_MAX, 4},
      {"binary_65536_over_max_frame_64k_minus_1", {F(binary(Bytes(65536, 1)))},
       Violation{0, 1009, r_frame_big, Detect::header}, true, UINT64_MAX, 65535},
      // ---- close payloads (detected once the whole frame arrived)
      {"close_one_byte", {F(close_frame(Bytes{0x03}))}, Violation{0, 1002, r_close1, Detect::frame_end}},
      {"close_one_byte_after_data", {F(text("abc")), F(close_frame(Bytes{0x03}))},
       Violation{1, 1002, r_close1, Detect::frame_end}},
      {"close_code_1005", {F(close_frame(1005))}, Violation{0, 1002, r_code, Detect::frame_end}},
      {"close_code_1006", {F(text("x")), F(close_frame(1006, "r"))}, Violation{1, 1002, r_code, Detect::frame_end}},
      {"close_code_999", {F(close_frame(999))}, Violation{0, 1002, r_code, Detect::frame_end}},
      {"close_code_0", {F(close_frame(0))}, Violation{0, 1002, r_code, Detect::frame_end}},
      {"close_code_1015", {F(close_frame(1015))}, Violation{0, 1002, r_code, Detect::frame_end}},
      {"close_code_2999", {F(close_frame(2999))}, Violation{0, 1002, r_code, Detect::frame_end}},
      {"close_code_5000", {F(close_frame(5000))}, Violation{0, 1002, r_code, Detect::frame_end}},
      {"close_bad_utf8", {F(close_frame(1000, "\xFF"))}, Violation{0, 1007, r_utf8, Detect::frame_end}},
      {"close_overlong_utf8", {F(ping("x")), F(close_frame(1000, "ab\xC0\x80"))}, Violation{1, 1007, r_utf8, Detect::frame_end}},
      {"close_truncated_utf8", {F(close_frame(1000, "caf\xC3"))}, Violation{0, 1007, r_utf8, Detect::frame_end}},
      {"close_mid_message_bad", {F(text("a", false)), F(close_frame(Bytes{1}))}, Violation{1, 1002, r_close1, Detect::frame_end}},
      // ---- length encodings the encoder never produces
      {"len16_non_minimal", {F(text("a")), with_mask({0x81, 0x7E, 0x00, 0x05}), Bytes(5, 'x')},
       Violation{1, 1002, r_len, Detect::length}},
      {"len16_zero", {with_mask({0x82, 0x7E, 0x00, 0x00})}, Violation{0, 1002, r_len, Detect::length}},
      {"len64_non_minimal", {with_mask({0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF})}, Violation{0, 1002, r_len, Detect::length}},
      {"len64_top_bit", {F(ping("")), with_mask({0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0})},
       Violation{1, 1002, r_len, Detect::length}},
      // Several violations in one header: the two-byte rules win, whatever the split.
      {"len_bad_and_unmasked", {Bytes{0x82, 0x7E, 0x00, 0x01, 'x'}}, Violation{0, 1002, r_unmasked, Detect::two_bytes}},
      {"ping_126_bad_length", {with_mask({0x89, 0x7E, 0x00, 0x05})}, Violation{0, 1002, r_ctl_big, Detect::two_bytes}},
      {"opcode_b_fragmented_126", {with_mask({0x0B, 0x7E, 0x01, 0x00})}, Violation{0, 1002, r_opcode, Detect::two_bytes}},
      {"rsv_and_oversize", {F(with_rsv(text("0123456789A"), 2))}, Violation{0, 1002, r_rsv, Detect::two_bytes}, true, 10},
  };
}

INSTANTIATE_TEST_SUITE_P(Streams, Tracker, ::testing::ValuesIn(tracker_cases()),
                         [](const ::testing::TestParamInfo<TrackerCase>& i) { return i.param.name; });

TEST(FrameTracker, BoundaryFollowsMessages) {
  FrameTracker tr;
  EXPECT_TRUE(tr.at_message_boundary());
  const Bytes a = t::encode_frame(t::text("Hel", false));
  const Bytes b = t::encode_frame(t::ping("p"));
  const Bytes c = t::encode_frame(t::cont("lo"));
  ASSERT_TRUE(tr.feed({a.data(), 1}).ok);
  EXPECT_FALSE(tr.at_message_boundary()) << "partial header";
  ASSERT_TRUE(tr.feed(std::span(a).subspan(1, a.size() - 2)).ok);
  EXPECT_FALSE(tr.at_message_boundary()) << "partial payload";
  ASSERT_TRUE(tr.feed(std::span(a).last(1)).ok);
  EXPECT_FALSE(tr.at_message_boundary()) << "fragmented message open";
  ASSERT_TRUE(tr.feed(b).ok);
  EXPECT_FALSE(tr.at_message_boundary()) << "control frame does not end the message";
  ASSERT_TRUE(tr.feed(c).ok);
  EXPECT_TRUE(tr.at_message_boundary());
  EXPECT_EQ(tr.frames_seen(), 3u);
  tr.reset();
  EXPECT_EQ(tr.frames_seen(), 0u);
  EXPECT_TRUE(tr.at_message_boundary());
}

TEST(FrameTracker, ResetKeepsLimitAndClearsFailure) {
  FrameTracker tr(4);
  EXPECT_FALSE(tr.feed(t::encode_frame(t::text("12345"))).ok);
  EXPECT_FALSE(tr.feed(t::encode_frame(t::text("1"))).ok);
  tr.reset();
  EXPECT_TRUE(tr.feed(t::encode_frame(t::text("1234"))).ok);
  const FrameTracker::Verdict v = tr.feed(t::encode_frame(t::text("12345")));
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.close_code, 1009);
}

TEST(FrameTracker, HugeDeclaredLengthIsTrackedWithoutData) {
  // A 2^40-byte frame: the tracker just counts.
  FrameTracker tr;
  std::array<std::uint8_t, header_size_max> h{};
  const std::size_t n = encode_header(h, Opcode::binary, true, 1ull << 40, t::default_mask.data());
  ASSERT_TRUE(tr.feed({h.data(), n}).ok);
  EXPECT_FALSE(tr.at_message_boundary());
  const Bytes chunk(4096, 0);
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(tr.feed(chunk).ok);
  EXPECT_FALSE(tr.at_message_boundary());
}

}  // namespace
