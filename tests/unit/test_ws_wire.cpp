// Session-less wire work (proto/ws_wire.h): client pongs, the lone close, the
// close scan, server close frames, and the frame splitter.  The per-read
// functions are checked on every prefix of every input (a frame cut at any
// byte is never mistaken for a whole one); the splitter is fed every input
// whole, split in two at every byte boundary, in three pieces, byte by byte,
// and with empty reads.

#include "proto/ws_wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
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

Bytes F(const FrameSpec& f) { return t::encode_frame(f); }
Bytes S(const FrameSpec& f) { return t::encode_frame(t::unmasked(f)); }  // a server frame
Bytes raw(std::uint8_t opcode, bool fin, std::size_t len) { return F({opcode, fin, Bytes(len, 'x')}); }
Bytes prefix_of(const Bytes& b, std::size_t n) { return Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n)); }
Bytes with_mask(Bytes h) {
  h[1] |= 0x80;
  t::append(h, Bytes{1, 2, 3, 4});
  return h;
}

// ---- an input as a list of wire items, with its layout read from the wire
// bits (independently of decode_header)

std::size_t wire_length_end(const Bytes& b) {
  if (b.size() < 2) return SIZE_MAX;
  const int len7 = b[1] & 0x7F;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

std::size_t wire_header_len(const Bytes& b) {
  const std::size_t l = wire_length_end(b);
  return l == SIZE_MAX ? l : l + ((b[1] & 0x80) ? 4 : 0);
}

// The whole frame's length (an item may be a frame's first bytes only).
std::size_t wire_frame_len(const Bytes& b) {
  const std::size_t l = wire_length_end(b);
  if (l == SIZE_MAX || b.size() < l) return SIZE_MAX;
  std::uint64_t payload = b[1] & 0x7F;
  if (l > 2) {
    payload = 0;
    for (std::size_t i = 2; i < l; ++i) payload = (payload << 8) | b[i];
  }
  return wire_header_len(b) + static_cast<std::size_t>(payload);
}

// A non-minimal or top-bit length, once its length bytes are in.
bool wire_bad_length(const Bytes& b) {
  const std::size_t l = wire_length_end(b);
  if (l == SIZE_MAX || b.size() < l || l == 2) return false;
  if (l == 4) return ((b[2] << 8) | b[3]) < 126;
  if (b[2] & 0x80) return true;
  for (int i = 2; i < 8; ++i)
    if (b[i] != 0) return false;
  return true;  // <= 0xFFFF in 64 bits
}

struct Layout {
  Bytes bytes;
  std::vector<std::size_t> offset;
  std::vector<std::size_t> end;
};

Layout lay_out(const std::vector<Bytes>& items) {
  Layout l;
  for (const Bytes& item : items) {
    l.offset.push_back(l.bytes.size());
    t::append(l.bytes, item);
    l.end.push_back(l.bytes.size());
  }
  return l;
}

std::span<const std::uint8_t> first(const Bytes& b, std::size_t n) { return {b.data(), n}; }

// ---------------------------------------------------------------- client pongs

struct PongCase {
  std::string name;
  std::vector<Bytes> items;
  std::size_t lead;  // how many leading items are complete, well-formed client pongs
};

std::ostream& operator<<(std::ostream& os, const PongCase& c) { return os << c.name; }

class WirePongs : public ::testing::TestWithParam<PongCase> {};

TEST_P(WirePongs, EveryPrefix) {
  const PongCase& c = GetParam();
  const Layout l = lay_out(c.items);
  SCOPED_TRACE(hex(l.bytes));
  for (std::size_t k = 0; k <= l.bytes.size(); ++k) {
    SCOPED_TRACE("prefix " + std::to_string(k));
    std::size_t pongs = 0;
    while (pongs < c.lead && l.end[pongs] <= k) ++pongs;
    const std::size_t span = pongs ? l.end[pongs - 1] : 0;
    const PongPrefix p = leading_client_pongs(first(l.bytes, k));
    EXPECT_EQ(p.pongs, pongs);
    EXPECT_EQ(p.bytes, span);
    EXPECT_EQ(client_pong_bytes(first(l.bytes, k)), pongs ? l.end[0] : 0u);
    EXPECT_EQ(is_client_pong(first(l.bytes, k)), pongs > 0);
    EXPECT_EQ(only_client_pongs(first(l.bytes, k)), k > 0 && span == k);
  }
}

std::vector<PongCase> pong_cases() {
  using t::pong;
  return {
      {"empty", {}, 0},
      {"empty_pong", {F(pong(""))}, 1},
      {"pong_payload", {F(pong("1234567"))}, 1},
      {"pong_125", {F(pong(std::string(125, 'p')))}, 1},
      {"three_pongs", {F(pong("a")), F(pong("")), F(pong(std::string(125, 'z')))}, 3},
      {"pong_then_text", {F(pong("a")), F(t::text("hi"))}, 1},
      {"pong_then_ping", {F(pong("a")), F(t::ping("a"))}, 1},
      {"pong_then_close", {F(pong("a")), F(t::close_frame(1000))}, 1},
      {"pong_then_partial_pong", {F(pong("abc")), prefix_of(F(pong("abc")), 7)}, 1},
      {"pong_then_garbage", {F(pong("")), Bytes{0xFF}}, 1},
      {"text_then_pong", {F(t::text("x")), F(pong(""))}, 0},
      {"ping", {F(t::ping("a"))}, 0},
      {"pong_126", {F(pong(std::string(126, 'p')))}, 0},
      {"pong_126_after_pong", {F(pong("")), F(pong(std::string(126, 'p')))}, 1},
      {"unmasked_pong", {F(t::unmasked(pong("a")))}, 0},
      {"unmasked_pong_after_pong", {F(pong("a")), F(t::unmasked(pong("a")))}, 1},
      {"pong_rsv1", {F(t::with_rsv(pong("a"), 4))}, 0},
      {"pong_rsv2", {F(t::with_rsv(pong("a"), 2))}, 0},
      {"pong_rsv3", {F(pong("")), F(t::with_rsv(pong("a"), 1))}, 1},
      {"pong_without_fin", {raw(0xA, false, 2)}, 0},
      {"pong_len16_non_minimal", {with_mask({0x8A, 0x7E, 0x00, 0x05}), Bytes(5, 'x')}, 0},
      {"pong_len64_zero", {with_mask({0x8A, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0})}, 0},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, WirePongs, ::testing::ValuesIn(pong_cases()),
                         [](const ::testing::TestParamInfo<PongCase>& i) { return i.param.name; });

// ---------------------------------------------------------------- lone close

struct LoneCloseCase {
  std::string name;
  std::vector<Bytes> items;
  bool found;
  std::size_t pongs = 0;
  std::optional<std::uint16_t> code{};
};

std::ostream& operator<<(std::ostream& os, const LoneCloseCase& c) { return os << c.name; }

class WireLoneClose : public ::testing::TestWithParam<LoneCloseCase> {};

TEST_P(WireLoneClose, Whole) {
  const LoneCloseCase& c = GetParam();
  const Layout l = lay_out(c.items);
  SCOPED_TRACE(hex(l.bytes));
  const LoneClose r = parse_lone_close(l.bytes);
  EXPECT_EQ(r.found, c.found);
  EXPECT_EQ(r.pongs, c.found ? c.pongs : 0u);
  EXPECT_EQ(r.code, c.found ? c.code : std::nullopt);
  if (!c.found) return;
  // The answer echoes the code, or is empty for an empty close.
  std::array<std::uint8_t, close_frame_bytes_max> out{};
  const std::size_t n = build_close_echo(out, r.code);
  const Bytes want = c.code ? Bytes{0x88, 0x02, static_cast<std::uint8_t>(*c.code >> 8),
                                    static_cast<std::uint8_t>(*c.code & 0xFF)}
                            : Bytes{0x88, 0x00};
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), want);
}

// For lone closes only: a prefix or extension of a read that is not one may
// well be one (a close and then a pong, cut after the close).
class WireLoneCloseFound : public ::testing::TestWithParam<LoneCloseCase> {};

TEST_P(WireLoneCloseFound, EveryStrictPrefixIsNotOne) {
  const Layout l = lay_out(GetParam().items);
  for (std::size_t k = 0; k < l.bytes.size(); ++k) {
    const LoneClose r = parse_lone_close(first(l.bytes, k));
    EXPECT_FALSE(r.found) << "prefix " << k << ": " << hex(first(l.bytes, k));
    EXPECT_EQ(r.pongs, 0u);
    EXPECT_FALSE(r.code.has_value());
  }
}

TEST_P(WireLoneCloseFound, AnythingAfterItIsNotOne) {
  const Layout l = lay_out(GetParam().items);
  for (const Bytes& tail : {Bytes{0x00}, Bytes{0x88}, F(t::pong("")), F(t::close_frame(1000))}) {
    Bytes b = l.bytes;
    t::append(b, tail);
    EXPECT_FALSE(parse_lone_close(b).found) << hex(b);
  }
}

std::vector<LoneCloseCase> lone_close_cases() {
  using t::close_frame;
  using t::pong;
  return {
      // ---- lone closes
      {"close_empty", {F(close_frame(Bytes{}))}, true, 0, std::nullopt},
      {"close_1000", {F(close_frame(1000))}, true, 0, 1000},
      {"close_1001_reason", {F(close_frame(1001, "bye"))}, true, 0, 1001},
      {"close_utf8_reason", {F(close_frame(1000, "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80"))}, true, 0, 1000},
      {"close_1013", {F(close_frame(1013))}, true, 0, 1013},
      {"close_3000", {F(close_frame(3000))}, true, 0, 3000},
      {"close_4999_reason_123", {F(close_frame(4999, std::string(123, 'r')))}, true, 0, 4999},
      {"pong_then_close", {F(pong("p")), F(close_frame(1000))}, true, 1, 1000},
      {"two_pongs_then_empty_close", {F(pong("")), F(pong(std::string(125, 'p'))), F(close_frame(Bytes{}))}, true, 2,
       std::nullopt},
      // ---- not lone closes: the session judges them
      {"empty", {}, false},
      {"pong_only", {F(pong(""))}, false},
      {"text", {F(t::text("x"))}, false},
      {"text_then_close", {F(t::text("x")), F(close_frame(1000))}, false},
      {"ping_then_close", {F(t::ping("x")), F(close_frame(1000))}, false},
      {"close_then_pong", {F(close_frame(1000)), F(pong(""))}, false},
      {"two_closes", {F(close_frame(1000)), F(close_frame(1000))}, false},
      {"close_then_garbage", {F(close_frame(1000)), Bytes{0x00}}, false},
      {"unmasked_close", {F(t::unmasked(close_frame(1000)))}, false},
      {"unmasked_pong_then_close", {F(t::unmasked(pong(""))), F(close_frame(1000))}, false},
      {"close_rsv1", {F(t::with_rsv(close_frame(1000), 4))}, false},
      {"close_rsv3", {F(t::with_rsv(close_frame(1000), 1))}, false},
      {"fragmented_close", {F({0x8, false, t::close_payload(1000)})}, false},
      {"close_126", {F(close_frame(1000, std::string(124, 'r')))}, false},
      {"close_len16_non_minimal", {with_mask({0x88, 0x7E, 0x00, 0x02}), Bytes{0x03, 0xE8}}, false},
      {"close_one_byte", {F(close_frame(Bytes{0x03}))}, false},
      {"close_code_0", {F(close_frame(0))}, false},
      {"close_code_999", {F(close_frame(999))}, false},
      {"close_code_1005", {F(close_frame(1005))}, false},
      {"close_code_1006", {F(pong("")), F(close_frame(1006))}, false},
      {"close_code_1015", {F(close_frame(1015))}, false},
      {"close_code_5000", {F(close_frame(5000))}, false},
      {"close_bad_utf8", {F(close_frame(1000, "\xFF"))}, false},
      {"close_truncated_utf8", {F(close_frame(1000, "caf\xC3"))}, false},
      {"close_surrogate", {F(close_frame(1000, "\xED\xA0\x80"))}, false},
      {"partial_close", {prefix_of(F(close_frame(1000, "bye")), 8)}, false},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, WireLoneClose, ::testing::ValuesIn(lone_close_cases()),
                         [](const ::testing::TestParamInfo<LoneCloseCase>& i) { return i.param.name; });

std::vector<LoneCloseCase> found_cases() {
  std::vector<LoneCloseCase> out;
  for (LoneCloseCase& c : lone_close_cases())
    if (c.found) out.push_back(std::move(c));
  return out;
}

INSTANTIATE_TEST_SUITE_P(Table, WireLoneCloseFound, ::testing::ValuesIn(found_cases()),
                         [](const ::testing::TestParamInfo<LoneCloseCase>& i) { return i.param.name; });

// ---------------------------------------------------------------- close scan

struct ScanCase {
  std::string name;
  std::vector<Bytes> items;
  CloseScan expect;  // for the whole input
};

std::ostream& operator<<(std::ostream& os, const ScanCase& c) { return os << c.name; }

std::string scan_name(CloseScan s) {
  switch (s) {
    case CloseScan::close_found: return "close_found";
    case CloseScan::no_close: return "no_close";
    case CloseScan::incomplete: return "incomplete";
    case CloseScan::malformed: return "malformed";
  }
  return "?";
}

// What the scan must say about the first k bytes, from the wire layout.
CloseScan expected_scan(const std::vector<Bytes>& items, const Layout& l, std::size_t k) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (l.offset[i] >= k) break;
    const std::size_t avail = k - l.offset[i];
    const Bytes have = prefix_of(items[i], std::min(avail, items[i].size()));
    if (wire_bad_length(have)) return CloseScan::malformed;
    if (avail < wire_header_len(items[i])) return CloseScan::incomplete;
    if ((items[i][0] & 0x0F) == 0x8) return CloseScan::close_found;
    if (avail < wire_frame_len(items[i])) return CloseScan::incomplete;
  }
  return CloseScan::no_close;
}

class WireCloseScan : public ::testing::TestWithParam<ScanCase> {};

TEST_P(WireCloseScan, Whole) {
  const ScanCase& c = GetParam();
  const Layout l = lay_out(c.items);
  EXPECT_EQ(scan_name(scan_for_close(l.bytes)), scan_name(c.expect)) << hex(l.bytes);
  // The model the prefixes are checked against agrees with the table.
  EXPECT_EQ(scan_name(expected_scan(c.items, l, l.bytes.size())), scan_name(c.expect));
}

TEST_P(WireCloseScan, EveryPrefix) {
  const ScanCase& c = GetParam();
  const Layout l = lay_out(c.items);
  for (std::size_t k = 0; k <= l.bytes.size(); ++k)
    ASSERT_EQ(scan_name(scan_for_close(first(l.bytes, k))), scan_name(expected_scan(c.items, l, k)))
        << "prefix " << k << " of " << hex(l.bytes);
}

std::vector<ScanCase> scan_cases() {
  using t::close_frame;
  const Bytes close_header_only = with_mask({0x88, 0x05});  // its 5-byte payload never came
  return {
      {"empty", {}, CloseScan::no_close},
      {"close_only", {F(close_frame(1000))}, CloseScan::close_found},
      {"empty_close", {F(close_frame(Bytes{}))}, CloseScan::close_found},
      {"frames_then_close", {F(t::text("a")), F(t::ping("")), F(t::pong("p")), F(close_frame(1001, "bye"))},
       CloseScan::close_found},
      {"frames_no_close", {F(t::text("a")), F(t::ping("")), F(t::binary(Bytes(300, 1)))}, CloseScan::no_close},
      {"close_header_without_payload", {F(t::text("a")), close_header_only}, CloseScan::close_found},
      {"close_then_garbage", {F(close_frame(1000)), Bytes{0xFF, 0xFF, 0xFF}}, CloseScan::close_found},
      // Headers are not judged: the connection is ending anyway.
      {"unmasked_close", {F(t::unmasked(close_frame(1000)))}, CloseScan::close_found},
      {"close_rsv", {F(t::with_rsv(close_frame(1000), 7))}, CloseScan::close_found},
      {"fragmented_close", {F({0x8, false, t::close_payload(1000)})}, CloseScan::close_found},
      {"close_one_byte", {F(close_frame(Bytes{0x03}))}, CloseScan::close_found},
      {"close_bad_code", {F(close_frame(1005))}, CloseScan::close_found},
      {"reserved_opcode_then_close", {raw(0x3, true, 2), F(close_frame(1000))}, CloseScan::close_found},
      {"binary_70000_then_close", {F(t::binary(Bytes(70000, 7))), F(close_frame(1000))}, CloseScan::close_found},
      {"partial_header", {Bytes{0x81}}, CloseScan::incomplete},
      {"text_then_partial_payload", {F(t::text("a")), prefix_of(F(t::text("hello")), 8)}, CloseScan::incomplete},
      {"partial_text_before_close_bytes", {prefix_of(F(t::text("hello")), 7)}, CloseScan::incomplete},
      {"len16_non_minimal", {with_mask({0x81, 0x7E, 0x00, 0x05}), Bytes(5, 'x')}, CloseScan::malformed},
      {"text_then_len64_top_bit", {F(t::text("a")), with_mask({0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0})},
       CloseScan::malformed},
      {"bad_length_close", {with_mask({0x88, 0x7E, 0x00, 0x02}), Bytes{0x03, 0xE8}}, CloseScan::malformed},
      {"bad_length_then_close", {with_mask({0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 1}), F(close_frame(1000))},
       CloseScan::malformed},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, WireCloseScan, ::testing::ValuesIn(scan_cases()),
                         [](const ::testing::TestParamInfo<ScanCase>& i) { return i.param.name; });

// ---------------------------------------------------------------- server close frames

struct CloseFrameCase {
  std::string name;
  std::uint16_t code;
  std::string reason;
};

std::ostream& operator<<(std::ostream& os, const CloseFrameCase& c) { return os << c.name; }

class WireCloseFrame : public ::testing::TestWithParam<CloseFrameCase> {};

TEST_P(WireCloseFrame, Builds) {
  const CloseFrameCase& c = GetParam();
  std::array<std::uint8_t, close_frame_bytes_max + 8> out;
  out.fill(0xEE);
  const std::size_t n = build_close_frame(out, c.code, c.reason);
  Bytes want{0x88, static_cast<std::uint8_t>(2 + c.reason.size()), static_cast<std::uint8_t>(c.code >> 8),
             static_cast<std::uint8_t>(c.code & 0xFF)};
  t::append(want, t::bytes(c.reason));
  ASSERT_EQ(n, want.size());
  EXPECT_EQ(n, close_frame_bytes(c.reason));
  EXPECT_LE(n, close_frame_bytes_max);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), want);
  EXPECT_EQ(out[n], 0xEE) << "wrote past the frame";
  // What a client sees: one FIN, unmasked close whose payload a peer accepts.
  const DecodeResult d = decode_header({out.data(), n});
  ASSERT_EQ(d.status, DecodeStatus::ok);
  EXPECT_TRUE(d.header.fin);
  EXPECT_FALSE(d.header.masked);
  EXPECT_EQ(d.header.rsv, 0);
  EXPECT_EQ(d.header.opcode, 0x8);
  EXPECT_EQ(d.header.header_len + d.header.payload_len, n);
  EXPECT_EQ(check_close_payload({out.data() + 2, n - 2}), ClosePayloadError::none);
}

TEST_P(WireCloseFrame, TooSmallAnOutputGetsNothing) {
  const CloseFrameCase& c = GetParam();
  const std::size_t need = close_frame_bytes(c.reason);
  for (std::size_t size = 0; size < need; ++size) {
    Bytes out(size, 0xEE);
    EXPECT_EQ(build_close_frame(out, c.code, c.reason), 0u) << "output of " << size;
    EXPECT_EQ(out, Bytes(size, 0xEE)) << "output of " << size;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, WireCloseFrame,
    ::testing::ValuesIn(std::vector<CloseFrameCase>{
        {"code_only", 1000, ""},
        {"idle_timeout", 1000, "idle timeout"},
        {"shutting_down", 1001, "server shutting down"},
        {"busy", 1013, "server busy: too many active sessions"},
        {"at_capacity", 1013, "server at maximum connection capacity, try again later"},
        {"utf8_reason", 4000, "\xC3\xA9t\xC3\xA9"},
        {"reason_123", 1008, std::string(close_reason_bytes_max, 'r')},
    }),
    [](const ::testing::TestParamInfo<CloseFrameCase>& i) { return i.param.name; });

static_assert(close_frame_bytes_max == 127);
static_assert(close_frame_bytes("idle timeout") == 16);

TEST(WireCloseFrame, ReasonOver123BytesIsRefused) {
  std::array<std::uint8_t, 256> out{};
  const std::string reason(close_reason_bytes_max + 1, 'r');
#ifdef NDEBUG
  EXPECT_EQ(build_close_frame(out, 1000, reason), 0u);
  EXPECT_EQ(out[0], 0);
#else
  EXPECT_DEATH((void)build_close_frame(out, 1000, reason), "must fit a control frame");
#endif
}

TEST(WireCloseFrame, Echoes) {
  std::array<std::uint8_t, 4> out{};
  ASSERT_EQ(build_close_echo(out, std::nullopt), 2u);
  EXPECT_EQ(out[0], 0x88);
  EXPECT_EQ(out[1], 0x00);
  ASSERT_EQ(build_close_echo(out, 4321), 4u);
  EXPECT_EQ(out, (std::array<std::uint8_t, 4>{0x88, 0x02, 0x10, 0xE1}));
  std::array<std::uint8_t, 3> small{};
  EXPECT_EQ(build_close_echo(small, 1000), 0u);
  EXPECT_EQ(build_close_echo(std::span(small).first(1), std::nullopt), 0u);
  EXPECT_EQ(small, (std::array<std::uint8_t, 3>{}));
}

// ---------------------------------------------------------------- frame splitter

enum class End {
  clean,       // every frame complete
  partial,     // the last item is a partial frame left in the carry
  bad_length,  // the `bad` item's length is invalid: reported once its length bytes are in
  too_large,   // the `bad` item is larger than the carry: reported once its header is in,
               // unless it lies wholly inside one read (then it is handed out in place)
};

struct SplitCase {
  std::string name;
  std::vector<Bytes> items;
  End end = End::clean;
  std::size_t bad = 0;  // with bad_length / too_large
  std::size_t carry_bytes = 256;
};

std::ostream& operator<<(std::ostream& os, const SplitCase& c) { return os << c.name; }

struct Seen {
  std::uint8_t opcode;
  bool fin;
  bool masked;
  Bytes payload;
  bool in_place;  // the payload pointed into the read, not the carry
};

class WireFrameSplitter : public ::testing::TestWithParam<SplitCase> {
 protected:
  // Reads the stream cut at `cuts` the way ringgate-load does, and checks
  // every frame, the carry after every read, and when an error shows.
  void run(const Layout& l, const std::vector<std::size_t>& cuts, const std::string& how) {
    const SplitCase& c = GetParam();
    SCOPED_TRACE(how);
    const auto straddles = [&](std::size_t j) {
      return std::any_of(cuts.begin(), cuts.end(), [&](std::size_t k) { return k > l.offset[j] && k < l.end[j]; });
    };
    // A frame over the carry that lies wholly inside one read needs no
    // carry, and is handed out like any other.
    const End end = c.end == End::too_large && !straddles(c.bad) ? End::clean : c.end;
    const std::size_t complete = end == End::clean ? c.items.size() : end == End::partial ? c.items.size() - 1 : c.bad;
    std::size_t detect = SIZE_MAX;
    if (end == End::bad_length) detect = l.offset[c.bad] + wire_length_end(c.items[c.bad]);
    if (end == End::too_large) detect = l.offset[c.bad] + wire_header_len(c.items[c.bad]);
    Bytes carry(c.carry_bytes + 1, 0xEE);  // one guard byte
    std::uint32_t carry_len = 0;
    std::vector<Seen> seen;
    std::size_t from = 0;
    bool failed = false;
    for (std::size_t i = 0; i <= cuts.size() && !failed; ++i) {
      const std::size_t to = i < cuts.size() ? cuts[i] : l.bytes.size();
      Bytes read(l.bytes.begin() + static_cast<std::ptrdiff_t>(from), l.bytes.begin() + static_cast<std::ptrdiff_t>(to));
      std::span<const std::uint8_t> data = read;
      FrameSplitter split({carry.data(), c.carry_bytes}, carry_len);
      while (!data.empty()) {
        const FrameSplitter::Next n = split.next(data);
        ASSERT_LE(n.consumed, data.size());
        data = data.subspan(n.consumed);
        if (n.status == SplitStatus::frame) {
          const auto at = reinterpret_cast<std::uintptr_t>(n.payload.data());
          const auto read_at = reinterpret_cast<std::uintptr_t>(read.data());
          const bool in_read = at >= read_at && at <= read_at + read.size();
          seen.push_back({n.header.opcode, n.header.fin, n.header.masked, Bytes(n.payload.begin(), n.payload.end()),
                          in_read});
          continue;
        }
        if (n.status == SplitStatus::need_more) {
          EXPECT_TRUE(data.empty()) << "need_more left bytes of the read unconsumed";
          break;
        }
        failed = true;
        ASSERT_GE(to, detect) << "error before it was detectable, in read [" << from << "," << to << ")";
        EXPECT_EQ(n.status, end == End::bad_length ? SplitStatus::bad_length : SplitStatus::too_large);
        break;
      }
      if (!failed) {
        ASSERT_LT(to, detect) << "error not reported in read [" << from << "," << to << ")";
        // The carry holds exactly the bytes of the frame in progress.
        std::size_t done = 0;
        for (std::size_t j = 0; j < complete && l.end[j] <= to; ++j) done = l.end[j];
        EXPECT_EQ(carry_len, to - done) << "after read [" << from << "," << to << ")";
      }
      EXPECT_EQ(carry.back(), 0xEE) << "wrote past the carry";
      from = to;
    }
    EXPECT_EQ(failed, end == End::bad_length || end == End::too_large);
    ASSERT_EQ(seen.size(), complete);
    for (std::size_t j = 0; j < complete; ++j) {
      const Bytes& item = c.items[j];
      SCOPED_TRACE("frame " + std::to_string(j));
      EXPECT_EQ(seen[j].opcode, item[0] & 0x0F);
      EXPECT_EQ(seen[j].fin, (item[0] & 0x80) != 0);
      EXPECT_EQ(seen[j].masked, (item[1] & 0x80) != 0);
      const Bytes payload(item.begin() + static_cast<std::ptrdiff_t>(wire_header_len(item)), item.end());
      EXPECT_TRUE(seen[j].payload == payload)
          << "payload differs";
      // A frame wholly inside one read is handed out in place.
      EXPECT_EQ(seen[j].in_place, !straddles(j));
    }
  }
};

TEST_P(WireFrameSplitter, Whole) { run(lay_out(GetParam().items), {}, "whole"); }

// Where to cut a stream: at every byte when it is short, else within
// `window` bytes of every frame edge (where headers and carries change
// hands) and every 97th byte inside.
std::vector<std::size_t> cut_points(const Layout& l, std::size_t every_under, std::size_t window, bool sample) {
  std::vector<std::size_t> out;
  for (std::size_t k = 0; k <= l.bytes.size(); ++k) {
    const auto near = [&](std::size_t edge) { return (k >= edge ? k - edge : edge - k) <= window; };
    if (l.bytes.size() <= every_under || std::any_of(l.offset.begin(), l.offset.end(), near) ||
        near(l.bytes.size()) || (sample && k % 97 == 0))
      out.push_back(k);
  }
  return out;
}

TEST_P(WireFrameSplitter, SplitAtEveryBoundary) {
  const Layout l = lay_out(GetParam().items);
  for (std::size_t k : cut_points(l, 4096, 32, true)) run(l, {k}, "split at " + std::to_string(k));
}

TEST_P(WireFrameSplitter, ThreePieces) {
  const Layout l = lay_out(GetParam().items);
  const std::vector<std::size_t> ks = cut_points(l, 160, 8, false);
  for (std::size_t i = 0; i < ks.size(); ++i)
    for (std::size_t j = i; j < ks.size(); ++j)
      run(l, {ks[i], ks[j]}, "split at " + std::to_string(ks[i]) + "," + std::to_string(ks[j]));
}

TEST_P(WireFrameSplitter, ByteByByte) {
  const Layout l = lay_out(GetParam().items);
  std::vector<std::size_t> cuts;
  for (std::size_t k = 1; k < l.bytes.size(); ++k) cuts.push_back(k);
  run(l, cuts, "byte by byte");
}

TEST_P(WireFrameSplitter, WithEmptyReads) {
  const Layout l = lay_out(GetParam().items);
  std::vector<std::size_t> cuts;
  for (std::size_t k = 0; k <= l.bytes.size(); k += 5) {
    cuts.push_back(k);
    cuts.push_back(k);
  }
  run(l, cuts, "every 5 bytes with empty reads");
}

std::vector<SplitCase> split_cases() {
  using t::binary;
  using t::text;
  const Bytes big16(300, 3);
  return {
      {"empty_stream", {}},
      {"one_text", {S(text("hello"))}},
      {"empty_frames", {S(text("")), S(t::ping("")), S(t::close_frame(Bytes{}))}},
      {"several", {S(text("a")), S(t::ping("pp")), S(binary(big16)), S(text("", false)), S(t::cont("end"))}, End::clean,
       0, 512},
      {"payload_125", {S(binary(Bytes(125, 1))), S(text("x"))}},
      {"payload_126", {S(binary(Bytes(126, 2))), S(text("x"))}, End::clean, 0, 256},
      {"payload_65535", {S(binary(Bytes(65535, 4))), S(text("x"))}, End::clean, 0, 65535 + 4},
      {"payload_65536", {S(text("x")), S(binary(Bytes(65536, 5)))}, End::clean, 0, 65536 + 10},
      {"close_with_reason", {S(text("a")), S(t::close_frame(1001, "server shutting down"))}},
      // The splitter decodes; judging the mask bit or opcode is the caller's.
      {"masked_frames", {F(text("masked")), F(binary(Bytes(200, 9)))}},
      {"reserved_opcode", {raw(0x3, true, 4)}},
      // The carry bounds the largest frame: exactly full is fine, one more is not.
      {"frame_fills_carry", {S(binary(Bytes(60, 1))), S(binary(Bytes(60, 2)))}, End::clean, 0, 62},
      {"frame_over_carry", {S(binary(Bytes(60, 1))), S(binary(Bytes(61, 2)))}, End::too_large, 1, 62},
      {"len16_frame_over_carry", {S(text("a")), S(binary(Bytes(300, 1)))}, End::too_large, 1, 256},
      {"len64_frame_over_carry", {S(binary(Bytes(65536, 1)))}, End::too_large, 0, 65536 + 9},
      {"header_sized_carry", {S(text("abcdefghijkl")), S(t::ping(""))}, End::clean, 0, header_size_max},
      // Malformed lengths.
      {"len16_non_minimal", {S(text("a")), Bytes{0x81, 0x7E, 0x00, 0x05}, Bytes(5, 'x')}, End::bad_length, 1},
      {"len16_zero_masked", {with_mask({0x82, 0x7E, 0x00, 0x00})}, End::bad_length, 0},
      {"len64_non_minimal", {Bytes{0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, Bytes(300, 'x')}, End::bad_length, 0,
       1024},
      {"len64_top_bit", {S(t::ping("")), Bytes{0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}}, End::bad_length, 1},
      // A stream that stops inside a frame leaves it in the carry.
      {"partial_header_at_end", {S(text("abc")), Bytes{0x81}}, End::partial},
      {"partial_ext_len_at_end", {S(text("abc")), Bytes{0x82, 0x7E, 0x01}}, End::partial},
      {"partial_payload_at_end", {S(text("abc")), prefix_of(S(text("hello")), 4)}, End::partial},
      {"partial_len64_payload_at_end", {prefix_of(S(binary(Bytes(70000, 6))), 5000)}, End::partial, 0, 70016},
  };
}

INSTANTIATE_TEST_SUITE_P(Streams, WireFrameSplitter, ::testing::ValuesIn(split_cases()),
                         [](const ::testing::TestParamInfo<SplitCase>& i) { return i.param.name; });

TEST(WireFrameSplitterCarry, PayloadInTheCarryStaysUntilTheNextCall) {
  const Bytes a = S(t::text("first"));
  const Bytes b = S(t::text("second"));
  std::array<std::uint8_t, 64> carry{};
  std::uint32_t carry_len = 0;
  FrameSplitter split(carry, carry_len);
  ASSERT_EQ(split.next(first(a, 3)).status, SplitStatus::need_more);
  EXPECT_EQ(carry_len, 3u);
  const FrameSplitter::Next n = split.next(std::span(a).subspan(3));
  ASSERT_EQ(n.status, SplitStatus::frame);
  EXPECT_EQ(n.consumed, a.size() - 3);
  EXPECT_EQ(carry_len, 0u);
  EXPECT_EQ(n.payload.data(), carry.data() + 2);
  EXPECT_EQ(t::str(n.payload), "first");
  // The next frame starts in the read, not the carry.
  const FrameSplitter::Next m = split.next(b);
  ASSERT_EQ(m.status, SplitStatus::frame);
  EXPECT_EQ(m.payload.data(), b.data() + 2);
  EXPECT_EQ(t::str(m.payload), "second");
}

TEST(WireFrameSplitterCarry, ACarryTooSmallForAHeaderIsTooLarge) {
  // A 14-byte header (64-bit length and mask) cannot be collected in 8 bytes.
  std::array<std::uint8_t, header_size_max> header{};
  const std::size_t hl = encode_header(header, Opcode::binary, true, 1 << 20, t::default_mask.data());
  ASSERT_EQ(hl, header_size_max);
  std::array<std::uint8_t, 8> carry{};
  std::uint32_t carry_len = 0;
  FrameSplitter split(carry, carry_len);
  EXPECT_EQ(split.next(std::span(header).first(1)).status, SplitStatus::need_more);
  const FrameSplitter::Next n = split.next(std::span(header).subspan(1));
  EXPECT_EQ(n.status, SplitStatus::too_large);
  EXPECT_LE(carry_len, carry.size());
  // Handed the whole header at once, too large for the carry too.
  std::uint32_t fresh_len = 0;
  FrameSplitter fresh(carry, fresh_len);
  EXPECT_EQ(fresh.next(std::span(header).first(12)).status, SplitStatus::too_large);
  EXPECT_EQ(fresh_len, 0u);
}

TEST(WireFrameSplitterCarry, EmptyReadIsNeedMore) {
  std::array<std::uint8_t, 16> carry{};
  std::uint32_t carry_len = 0;
  FrameSplitter split(carry, carry_len);
  const FrameSplitter::Next n = split.next({});
  EXPECT_EQ(n.status, SplitStatus::need_more);
  EXPECT_EQ(n.consumed, 0u);
  EXPECT_EQ(carry_len, 0u);
}

}  // namespace
