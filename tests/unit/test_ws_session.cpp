// ws::Session: masked client frames in, server frames out, through wslay and
// the FrameTracker.  Every inbound stream is fed whole, split in two at every
// byte boundary and byte by byte, and must produce identical server output.

#include "proto/ws_session.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using namespace rg::proto::ws;
using rg::test::Bytes;
using rg::test::hex;
namespace t = rg::test;

class Echo final : public MessageHandler {
 public:
  void on_message(Session& s, Opcode opcode, std::span<const std::uint8_t> payload) override {
    received.emplace_back(opcode, Bytes(payload.begin(), payload.end()));
    if (echo) s.queue_message(opcode, payload);
  }
  std::vector<std::pair<Opcode, Bytes>> received;
  bool echo = true;
};

// Sends everything staged, `piece` bytes per send.
Bytes drain(Session& s, std::size_t piece = SIZE_MAX) {
  Bytes out;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    const std::span<const std::uint8_t> o = s.next_output();
    if (o.empty()) break;
    const std::size_t n = std::min(piece, o.size());
    out.insert(out.end(), o.begin(), o.begin() + static_cast<std::ptrdiff_t>(n));
    s.output_sent(n);
  }
  EXPECT_FALSE(s.has_output());
  return out;
}

struct ServerFrame {
  std::uint8_t opcode;
  bool fin;
  Bytes payload;
};

// Parses server output: every frame must be unmasked with RSV clear.
std::vector<ServerFrame> parse_server(const Bytes& out) {
  std::vector<ServerFrame> frames;
  std::size_t at = 0;
  while (at < out.size()) {
    const DecodeResult r = decode_header(std::span(out).subspan(at));
    EXPECT_EQ(r.status, DecodeStatus::ok) << "at " << at << ": " << hex(out);
    if (r.status != DecodeStatus::ok) break;
    EXPECT_FALSE(r.header.masked) << "server frames must not be masked";
    EXPECT_EQ(r.header.rsv, 0);
    at += r.header.header_len;
    EXPECT_LE(at + r.header.payload_len, out.size()) << "truncated server frame";
    if (at + r.header.payload_len > out.size()) break;
    frames.push_back({r.header.opcode, r.header.fin,
                      Bytes(out.begin() + static_cast<std::ptrdiff_t>(at),
                            out.begin() + static_cast<std::ptrdiff_t>(at + r.header.payload_len))});
    at += r.header.payload_len;
  }
  return frames;
}

// What the server did with one feeding of a stream.
struct Outcome {
  Bytes output;
  std::size_t messages = 0;
  bool close_received = false;
  bool close_sent = false;
  bool read_closed = false;
  std::uint16_t close_code = 0;
  bool quiescent = false;
  bool fatal = false;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{output [" << hex(o.output) << "], messages " << o.messages << ", close_received "
            << o.close_received << ", close_sent " << o.close_sent << ", read_closed " << o.read_closed
            << ", close_code " << o.close_code << ", quiescent " << o.quiescent << ", fatal " << o.fatal << "}";
}

struct Feeding {
  std::vector<std::size_t> cuts;
  bool drain_between = false;  // send output after every feed
  std::size_t piece = SIZE_MAX;
};

// `pool_segments`: how many 1 KiB segments the session may hold for data
// (the buffer budget); unlimited by default.
Outcome run(const Bytes& stream, const SessionLimits& limits, const Feeding& f,
            std::uint64_t pool_segments = UINT64_MAX) {
  Echo echo;
  rg::proto::SegmentPool pool;  // outlives the session, which gives its segments back
  pool.init(rg::proto::SegmentPool::segment_size_min, 4, pool_segments);
  Session s;
  EXPECT_TRUE(s.init(limits, &echo, &pool));
  Outcome o;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= f.cuts.size(); ++i) {
    const std::size_t to = i < f.cuts.size() ? f.cuts[i] : stream.size();
    if (s.feed(std::span(stream).subspan(from, to - from)) == Session::FeedResult::fatal) o.fatal = true;
    if (f.drain_between) t::append(o.output, drain(s, f.piece));
    from = to;
  }
  t::append(o.output, drain(s, f.piece));
  o.messages = echo.received.size();
  o.close_received = s.close_received();
  o.close_sent = s.close_sent();
  o.read_closed = s.read_closed();
  o.close_code = s.close_code();
  o.quiescent = s.quiescent();
  return o;
}

struct Expected {
  std::uint8_t opcode;
  Bytes payload;  // for close: code + reason
};

Expected E(std::uint8_t opcode, std::string_view payload) { return {opcode, t::bytes(payload)}; }
Expected Close(std::uint16_t code, std::string_view reason = {}) { return {0x8, t::close_payload(code, reason)}; }
Expected CloseEmpty() { return {0x8, {}}; }

struct SessionCase {
  std::string name;
  std::vector<Bytes> items;  // wire items, concatenated
  std::vector<Expected> expect;
  std::size_t messages;      // delivered to the handler
  bool close_received = false;
  bool close_sent = false;
  bool quiescent = true;
  // Session::close_code(): closes the session itself queued; -1: not checked
  // (closes wslay queues on its own, e.g. 1007 for bad text, do not show up).
  int close_code = 0;
  std::uint64_t max_message = 1024 * 1024;
  // Segments (1 KiB, 1000 bytes of payload) the pool lends for data: the
  // worker's buffer budget, which a message being received is charged to.
  std::uint64_t pool_segments = UINT64_MAX;
};

std::ostream& operator<<(std::ostream& os, const SessionCase& c) { return os << c.name; }

Bytes stream_of(const SessionCase& c) {
  Bytes s;
  for (const auto& i : c.items) t::append(s, i);
  return s;
}

class Sessions : public ::testing::TestWithParam<SessionCase> {
 protected:
  SessionLimits limits() const { return {.max_message_bytes = GetParam().max_message, .output_chunk_bytes = 256 * 1024}; }
};

TEST_P(Sessions, WholeMatchesExpectation) {
  const SessionCase& c = GetParam();
  const Outcome o = run(stream_of(c), limits(), {}, c.pool_segments);
  SCOPED_TRACE(::testing::PrintToString(o));
  EXPECT_FALSE(o.fatal);
  const std::vector<ServerFrame> frames = parse_server(o.output);
  ASSERT_EQ(frames.size(), c.expect.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    SCOPED_TRACE("server frame " + std::to_string(i));
    EXPECT_EQ(frames[i].opcode, c.expect[i].opcode);
    EXPECT_TRUE(frames[i].fin);
    EXPECT_EQ(frames[i].payload, c.expect[i].payload)
        << "got '" << t::str(frames[i].payload) << "' want '" << t::str(c.expect[i].payload) << "'";
  }
  EXPECT_EQ(o.messages, c.messages);
  EXPECT_EQ(o.close_received, c.close_received);
  EXPECT_EQ(o.close_sent, c.close_sent);
  EXPECT_EQ(o.quiescent, c.quiescent);
  if (c.close_code >= 0) {
    EXPECT_EQ(o.close_code, c.close_code);
  }
  if (c.close_sent) {
    EXPECT_TRUE(o.read_closed);
  }
}

TEST_P(Sessions, SplitAtEveryBoundaryMatchesWhole) {
  const Bytes stream = stream_of(GetParam());
  const std::uint64_t budget = GetParam().pool_segments;
  const Outcome whole = run(stream, limits(), {}, budget);
  for (std::size_t k = 0; k <= stream.size(); ++k)
    ASSERT_EQ(run(stream, limits(), {{k}}, budget), whole) << "split at " << k;
}

TEST_P(Sessions, ByteByByteMatchesWhole) {
  const Bytes stream = stream_of(GetParam());
  const std::uint64_t budget = GetParam().pool_segments;
  const Outcome whole = run(stream, limits(), {}, budget);
  std::vector<std::size_t> cuts;
  for (std::size_t k = 1; k < stream.size(); ++k) cuts.push_back(k);
  ASSERT_EQ(run(stream, limits(), {cuts}, budget), whole);
}

TEST_P(Sessions, DrainingBetweenFeedsAndPartialSendsMatchWhole) {
  const Bytes stream = stream_of(GetParam());
  const std::uint64_t budget = GetParam().pool_segments;
  const Outcome whole = run(stream, limits(), {}, budget);
  std::vector<std::size_t> cuts;
  for (std::size_t k = 7; k < stream.size(); k += 7) cuts.push_back(k);
  ASSERT_EQ(run(stream, limits(), {cuts, true}, budget), whole) << "drained after every feed";
  ASSERT_EQ(run(stream, limits(), {cuts, true, 3}, budget), whole) << "drained 3 bytes per send";
  ASSERT_EQ(run(stream, limits(), {{}, false, 1}, budget), whole) << "drained 1 byte per send";
}

Bytes F(const t::FrameSpec& f) { return t::encode_frame(f); }
Bytes raw(std::uint8_t opcode, bool fin, std::size_t len) { return F({opcode, fin, Bytes(len, 'x')}); }

std::vector<SessionCase> session_cases() {
  using t::binary;
  using t::close_frame;
  using t::cont;
  using t::ping;
  using t::pong;
  using t::text;
  Bytes all_bytes(256);
  for (int i = 0; i < 256; ++i) all_bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
  const std::string b125(125, 'p');
  // Over one segment's 1000 bytes: with a budget of one segment, room runs
  // out 1000 bytes into the payload.
  const std::string a1500(1500, 'a');
  constexpr std::uint64_t mib = 1024 * 1024;
  constexpr std::string_view no_room = "no room for this message within the server's buffer budget: try again later";
  return {
      // ---- echo
      {"text", {F(text("Hello, ringgate"))}, {E(0x1, "Hello, ringgate")}, 1},
      {"text_utf8", {F(text("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"))},
       {E(0x1, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80")}, 1},
      {"binary_all_bytes", {F(binary(all_bytes))}, {{0x2, all_bytes}}, 1},
      {"empty_text", {F(text(""))}, {E(0x1, "")}, 1},
      {"empty_binary", {F(binary({}))}, {{0x2, {}}}, 1},
      {"several_messages", {F(text("one")), F(binary({1, 2, 3})), F(text("three"))},
       {E(0x1, "one"), {0x2, {1, 2, 3}}, E(0x1, "three")}, 3},
      {"fragmented_text", {F(text("Hel", false)), F(cont("l", false)), F(cont("o"))}, {E(0x1, "Hello")}, 1},
      {"fragmented_utf8_split_codepoint", {F(text("caf\xC3", false)), F(cont("\xA9!"))}, {E(0x1, "caf\xC3\xA9!")},
       1},
      {"fragmented_binary_empty_first", {F(binary({}, false)), F({0x0, true, Bytes{9, 9}})}, {{0x2, {9, 9}}}, 1},
      {"fragmented_with_ping", {F(text("Hel", false)), F(ping("p")), F(cont("lo"))}, {E(0xA, "p"), E(0x1, "Hello")},
       1},
      {"ping", {F(ping("abc"))}, {E(0xA, "abc")}, 0},
      {"ping_empty", {F(ping(""))}, {E(0xA, "")}, 0},
      {"ping_125", {F(ping(b125))}, {E(0xA, b125)}, 0},
      {"ping_binary_payload", {F({0x9, true, Bytes{0, 0xFF, 0x80}})}, {{0xA, {0, 0xFF, 0x80}}}, 0},
      {"pong_ignored", {F(pong("unsolicited"))}, {}, 0},
      {"text_ping_text", {F(text("a")), F(ping("p")), F(text("b"))}, {E(0x1, "a"), E(0xA, "p"), E(0x1, "b")}, 2},
      {"message_at_max", {F(text("0123456789"))}, {E(0x1, "0123456789")}, 1, false, false, true, 0, 10},
      // ---- close handshake
      {"close_1000", {F(close_frame(1000))}, {Close(1000)}, 0, true, true, false},
      {"close_1000_reason", {F(close_frame(1000, "bye"))}, {Close(1000, "bye")}, 0, true, true, false},
      {"close_1001_utf8_reason", {F(close_frame(1001, "au revoir \xC3\xA9t\xC3\xA9"))},
       {Close(1001, "au revoir \xC3\xA9t\xC3\xA9")}, 0, true, true, false},
      {"close_3000", {F(close_frame(3000, "app"))}, {Close(3000, "app")}, 0, true, true, false},
      {"close_empty", {F(close_frame(Bytes{}))}, {CloseEmpty()}, 0, true, true, false},
      {"text_then_close", {F(text("last")), F(close_frame(1000))}, {E(0x1, "last"), Close(1000)}, 1, true, true,
       false},
      {"close_then_text_ignored", {F(close_frame(1000)), F(text("ignored"))}, {Close(1000)}, 0, true, true, false},
      {"close_then_garbage_ignored", {F(close_frame(1000)), Bytes{0xFF, 0xFF, 0xFF}}, {Close(1000)}, 0, true, true,
       false},
      {"close_inside_fragmented", {F(text("a", false)), F(close_frame(1000))}, {Close(1000)}, 0, true, true, false},
      // ---- violations the tracker catches (close code + reason)
      {"unmasked", {F(t::unmasked(text("hi")))}, {Close(1002, "client frames must be masked")}, 0, false, true, false,
       1002},
      {"text_then_unmasked", {F(text("ok")), F(t::unmasked(text("hi"))), F(text("never"))},
       {E(0x1, "ok"), Close(1002, "client frames must be masked")}, 1, false, true, false, 1002},
      {"rsv1", {F(t::with_rsv(text("hi"), 4))}, {Close(1002, "reserved bits set but no extension was negotiated")}, 0,
       false, true, false, 1002},
      {"opcode_3", {raw(0x3, true, 1)}, {Close(1002, "reserved opcode")}, 0, false, true, false, 1002},
      {"opcode_b", {F(text("x")), raw(0xB, true, 0)}, {E(0x1, "x"), Close(1002, "reserved opcode")}, 1, false, true,
       false, 1002},
      {"ping_126", {raw(0x9, true, 126)}, {Close(1002, "control frame payload over 125 bytes")}, 0, false, true, false,
       1002},
      {"ping_fragmented", {raw(0x9, false, 1)}, {Close(1002, "fragmented control frame")}, 0, false, true, false, 1002},
      {"continuation_without_start", {F(cont("x"))}, {Close(1002, "continuation frame without a message to continue")},
       0, false, true, false, 1002},
      {"text_inside_fragmented", {F(text("a", false)), F(text("b"))},
       {Close(1002, "new data frame inside a fragmented message")}, 0, false, true, false, 1002},
      {"bad_length", {F(text("ok")), Bytes{0x81, 0xFE, 0x00, 0x02, 1, 2, 3, 4, 'x', 'y'}},
       {E(0x1, "ok"), Close(1002, "invalid payload length encoding")}, 1, false, true, false, 1002},
      {"close_one_byte", {F(close_frame(Bytes{0x03}))}, {Close(1002, "close payload of one byte")}, 0, false, true,
       false, 1002},
      {"close_code_1005", {F(close_frame(1005))}, {Close(1002, "invalid close code")}, 0, false, true, false, 1002},
      {"close_code_999", {F(text("x")), F(close_frame(999, "r"))}, {E(0x1, "x"), Close(1002, "invalid close code")},
       1, false, true, false, 1002},
      {"close_bad_utf8_reason", {F(close_frame(1000, "bad \xFF"))}, {Close(1007, "close reason is not valid UTF-8")}, 0,
       false, true, false, 1007},
      {"oversize", {F(text("0123456789A"))}, {Close(1009, "message larger than max_message_size")}, 0, false, true,
       false, 1009, 10},
      {"oversize_fragments", {F(text("012345", false)), F(cont("6789", false)), F(cont("A"))},
       {Close(1009, "message larger than max_message_size")}, 0, false, true, false, 1009, 10},
      // ---- violations wslay catches: invalid UTF-8 in text -> 1007 (no reason)
      {"text_bad_utf8", {F(text("bad \xFF"))}, {Close(1007)}, 0, false, true, false, -1},
      {"text_truncated_utf8", {F(text("caf\xC3"))}, {Close(1007)}, 0, false, true, false, -1},
      {"text_surrogate", {F(text("\xED\xA0\x80"))}, {Close(1007)}, 0, false, true, false, -1},
      {"text_ok_then_bad_utf8", {F(text("fine")), F(text("\xC0\x80"))}, {E(0x1, "fine"), Close(1007)}, 1, false, true, false, -1},
      {"fragmented_bad_utf8", {F(text("ok", false)), F(cont("\xC3(", true))}, {Close(1007)}, 0, false, true, false, -1},
      {"fragmented_truncated_at_end", {F(text("ok", false)), F(cont("\xE2\x82", true))}, {Close(1007)}, 0, false, true, false, -1},
      {"binary_not_validated", {F(binary({0xFF, 0xC0}))}, {{0x2, {0xFF, 0xC0}}}, 1},
      // ---- the buffer budget: a message that finds no room is refused with
      // 1013, at the end of the frame where room ran out, so that the frame
      // is judged whole first (a bad one gets 1007 however it was split).
      {"budget_binary_refused", {F(binary(t::bytes(a1500)))}, {Close(1013, no_room)}, 0, false, true, false, 1013,
       mib, 1},
      {"budget_text_refused", {F(text(a1500))}, {Close(1013, no_room)}, 0, false, true, false, 1013, mib, 1},
      {"budget_fits", {F(text(std::string(1000, 'a')))}, {E(0x1, std::string(1000, 'a'))}, 1, false, false, true, 0,
       mib, 3},  // one segment for the message, two for its echo
      // fuzz_ws_session crash-05d5d372: the bad byte lies past the point where
      // room ran out.  Whole, wslay saw it in the same chunk and failed the
      // frame (1007) before handing the chunk over; split, room ran out first
      // and the answer was 1013.
      {"budget_text_bad_utf8_past_room", {F(text(a1500 + "\xFF"))}, {Close(1007)}, 0, false, true, false, -1, mib, 1},
      {"budget_text_truncated_utf8_at_end", {F(text(a1500 + "\xC3"))}, {Close(1007)}, 0, false, true, false, -1, mib,
       1},
      {"budget_fragment_refused_before_bad_fragment", {F(text(a1500, false)), F(cont("\xFF"))}, {Close(1013, no_room)},
       0, false, true, false, 1013, mib, 1},
  };
}

INSTANTIATE_TEST_SUITE_P(Streams, Sessions, ::testing::ValuesIn(session_cases()),
                         [](const ::testing::TestParamInfo<SessionCase>& i) { return i.param.name; });

// ------------------------------------------------------------------ state

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(s.init({}, &echo)); }
  void feed(const Bytes& b) { ASSERT_EQ(s.feed(b), Session::FeedResult::ok); }
  Echo echo;
  Session s;
};

TEST_F(SessionTest, FreshSessionIsQuiescentAndReusable) {
  EXPECT_TRUE(s.quiescent());
  EXPECT_TRUE(s.reusable());
  EXPECT_FALSE(s.has_output());
  EXPECT_TRUE(s.next_output().empty());
  EXPECT_FALSE(s.close_received());
  EXPECT_FALSE(s.close_sent());
  EXPECT_FALSE(s.read_closed());
  EXPECT_EQ(s.close_code(), 0);
  EXPECT_EQ(s.staged_bytes(), 0u);
}

TEST_F(SessionTest, QuiescentOnlyBetweenMessagesWithOutputDrained) {
  const Bytes first = F(t::text("Hel", false));
  const Bytes last = F(t::cont("lo"));
  feed({first.begin(), first.begin() + 3});
  EXPECT_FALSE(s.quiescent()) << "partial header";
  feed({first.begin() + 3, first.end()});
  EXPECT_FALSE(s.quiescent()) << "fragmented message open";
  feed(F(t::ping("p")));
  EXPECT_FALSE(s.quiescent()) << "mid-message and a pong staged";
  EXPECT_FALSE(drain(s).empty());
  EXPECT_FALSE(s.quiescent()) << "still mid-message";
  feed({last.begin(), last.end() - 1});
  EXPECT_FALSE(s.quiescent()) << "partial payload";
  feed({last.end() - 1, last.end()});
  EXPECT_FALSE(s.quiescent()) << "echo staged";
  EXPECT_GT(s.staged_bytes(), 0u);
  const auto out = s.next_output();
  EXPECT_FALSE(s.quiescent()) << "send in flight";
  s.output_sent(out.size() - 1);
  EXPECT_FALSE(s.quiescent()) << "one byte left";
  EXPECT_EQ(s.staged_bytes(), 1u);
  EXPECT_EQ(drain(s).size(), 1u);
  EXPECT_TRUE(s.quiescent());
  EXPECT_TRUE(s.reusable());
  ASSERT_EQ(echo.received.size(), 1u);
  EXPECT_EQ(t::str(echo.received[0].second), "Hello");
}

TEST_F(SessionTest, OutputStaysStableWhileInFlight) {
  feed(F(t::text("first")));
  const auto out = s.next_output();
  const Bytes copy(out.begin(), out.end());
  const std::uint8_t* data = out.data();
  feed(F(t::text("second")));  // must not touch the in-flight bytes
  ASSERT_TRUE(s.queue_message(Opcode::binary, t::bytes("third")));
  EXPECT_EQ(Bytes(data, data + copy.size()), copy);
  s.output_sent(copy.size());
  const auto frames = parse_server(drain(s));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(t::str(frames[0].payload), "second");
  EXPECT_EQ(t::str(frames[1].payload), "third");
  EXPECT_EQ(parse_server(copy)[0].payload, t::bytes("first"));
}

TEST_F(SessionTest, ZeroByteSendKeepsOutput) {
  feed(F(t::text("abc")));
  const auto out = s.next_output();
  const std::size_t n = out.size();
  s.output_sent(0);
  EXPECT_EQ(s.next_output().size(), n);
  s.output_sent(n);
  EXPECT_TRUE(s.quiescent());
}

TEST_F(SessionTest, RecycleServesTheNextConnection) {
  feed(F(t::text("one")));
  drain(s);
  ASSERT_TRUE(s.reusable());
  s.recycle();
  EXPECT_TRUE(s.quiescent());
  feed(F(t::text("two")));
  const auto frames = parse_server(drain(s));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(t::str(frames[0].payload), "two");
}

TEST_F(SessionTest, NotReusableAfterClose) {
  feed(F(t::close_frame(1000)));
  drain(s);
  EXPECT_FALSE(s.quiescent());
  EXPECT_FALSE(s.reusable());
  EXPECT_TRUE(s.close_received());
  EXPECT_TRUE(s.close_sent());
  // init() makes it usable again.
  ASSERT_TRUE(s.init({}, &echo));
  EXPECT_TRUE(s.reusable());
  feed(F(t::text("again")));
  EXPECT_EQ(parse_server(drain(s)).size(), 1u);
}

TEST_F(SessionTest, NotReusableAfterViolation) {
  feed(F(t::unmasked(t::text("x"))));
  drain(s);
  EXPECT_FALSE(s.reusable());
  EXPECT_TRUE(s.read_closed());
  EXPECT_EQ(s.close_code(), 1002);
  // Further input is ignored.
  feed(F(t::text("ignored")));
  EXPECT_TRUE(drain(s).empty());
  EXPECT_TRUE(echo.received.empty());
}

TEST_F(SessionTest, ServerInitiatedCloseHandshake) {
  s.queue_close(1001, "going away");
  EXPECT_EQ(s.close_code(), 1001);
  EXPECT_FALSE(s.read_closed()) << "1001 keeps reading for the peer's close";
  EXPECT_FALSE(s.queue_message(Opcode::text, t::bytes("late")));
  const auto frames = parse_server(drain(s));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode, 0x8);
  EXPECT_EQ(frames[0].payload, t::close_payload(1001, "going away"));
  EXPECT_TRUE(s.close_sent());
  EXPECT_FALSE(s.close_received());
  feed(F(t::close_frame(1001)));
  EXPECT_TRUE(s.close_received());
  EXPECT_TRUE(drain(s).empty()) << "no second close";
}

TEST_F(SessionTest, QueueCloseTruncatesLongReason) {
  s.queue_close(1011, std::string(200, 'r'));
  const auto frames = parse_server(drain(s));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload.size(), 125u);
  EXPECT_TRUE(s.read_closed());
}

TEST(Session, SmallOutputChunksStillDeliverWholeFrames) {
  Echo echo;
  Session s;
  ASSERT_TRUE(s.init({.max_message_bytes = 1024 * 1024, .output_chunk_bytes = 16}, &echo));
  const Bytes payload = t::bytes(std::string(1000, 'z'));
  ASSERT_EQ(s.feed(F(t::binary(payload))), Session::FeedResult::ok);
  ASSERT_EQ(s.feed(F(t::ping("pp"))), Session::FeedResult::ok);
  Bytes out;
  for (;;) {
    const auto o = s.next_output();
    if (o.empty()) break;
    EXPECT_LE(o.size(), 16u);
    t::append(out, o);
    s.output_sent(o.size());
  }
  const auto frames = parse_server(out);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].opcode, 0x2);
  EXPECT_EQ(frames[0].payload, payload);
  EXPECT_EQ(frames[1].opcode, 0xA);
  EXPECT_TRUE(s.quiescent());
}

TEST(Session, LargeMessageEcho) {
  Echo echo;
  Session s;
  ASSERT_TRUE(s.init({}, &echo));
  Bytes payload(300 * 1024);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7);
  const Bytes wire = F(t::binary(payload));
  for (std::size_t at = 0; at < wire.size(); at += 1500) {
    const std::size_t n = std::min<std::size_t>(1500, wire.size() - at);
    ASSERT_EQ(s.feed(std::span(wire).subspan(at, n)), Session::FeedResult::ok);
  }
  std::size_t sends = 0;
  Bytes out;
  for (;;) {
    const auto o = s.next_output();
    if (o.empty()) break;
    EXPECT_LE(o.size(), 256u * 1024);
    t::append(out, o);
    s.output_sent(o.size());
    ++sends;
  }
  EXPECT_GE(sends, 2u) << "300 KiB goes out in 256 KiB steps";
  const auto frames = parse_server(out);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload, payload);
  EXPECT_TRUE(s.quiescent());
}

TEST(Session, HandlerMayStayQuiet) {
  Echo echo;
  echo.echo = false;
  Session s;
  ASSERT_TRUE(s.init({}, &echo));
  ASSERT_EQ(s.feed(F(t::text("a"))), Session::FeedResult::ok);
  EXPECT_TRUE(drain(s).empty());
  EXPECT_EQ(echo.received.size(), 1u);
  EXPECT_TRUE(s.quiescent());
}

}  // namespace

namespace {

// wslay validates a close reason's UTF-8 chunk by chunk; a close frame whose
// payload straddles its 4 KiB input buffer arrives in two chunks even when
// the whole stream is fed at once.
TEST(Session, CloseFrameStraddlingWslayInputBuffer) {
  const std::string reason = "\xC3\xA9t\xC3\xA9 \xC3\xA9t\xC3\xA9";
  for (std::size_t len = 4060; len <= 4090; ++len) {
    Echo echo;
    Session s;
    ASSERT_TRUE(s.init({}, &echo));
    Bytes wire = F(t::binary(Bytes(len, 0x42)));
    t::append(wire, F(t::close_frame(1000, reason)));
    ASSERT_EQ(s.feed(wire), Session::FeedResult::ok);
    const auto frames = parse_server(drain(s));
    ASSERT_EQ(frames.size(), 2u) << len;
    EXPECT_EQ(frames[1].opcode, 0x8);
    EXPECT_EQ(frames[1].payload, t::close_payload(1000, reason)) << "binary payload " << len;
    EXPECT_TRUE(s.close_received()) << len;
  }
}

}  // namespace

namespace {

// A pong wslay has queued but not yet written is dropped when a close is
// queued behind it (wslay sends nothing but the close once one is queued), so
// a ping and a violation in the same read get only the close, while the same
// bytes in two reads may get the pong first.  Either way the close is last
// and carries the right code.
TEST(Session, PingThenViolationAlwaysEndsWithTheClose) {
  Bytes stream = F(t::text("012345", false));
  t::append(stream, F(t::ping("p")));
  t::append(stream, F(t::cont("6789A")));
  const SessionLimits limits{.max_message_bytes = 10, .output_chunk_bytes = 256 * 1024};
  for (std::size_t k = 0; k <= stream.size(); ++k) {
    const Outcome o = run(stream, limits, {{k}});
    const auto frames = parse_server(o.output);
    ASSERT_FALSE(frames.empty()) << k;
    ASSERT_LE(frames.size(), 2u) << k;
    EXPECT_EQ(frames.back().opcode, 0x8) << k;
    EXPECT_EQ(frames.back().payload, t::close_payload(1009, "message larger than max_message_size")) << k;
    if (frames.size() == 2) {
      EXPECT_EQ(frames[0].opcode, 0xA) << k;
      EXPECT_EQ(t::str(frames[0].payload), "p") << k;
    }
    EXPECT_EQ(o.close_code, 1009);
  }
}

// Echoes are framed into the segment queue as they are made, in wire order,
// even while a send is in flight; a client close that arrives after an echo
// was made is answered behind it.  Nothing follows our close (RFC 6455
// 5.5.1), and no echo made before it is lost.
TEST(Session, CloseWhileSendInFlight) {
  Echo echo;
  Session s;
  ASSERT_TRUE(s.init({}, &echo));
  ASSERT_EQ(s.feed(F(t::text("first"))), Session::FeedResult::ok);
  const auto inflight = s.next_output();
  const Bytes first(inflight.begin(), inflight.end());
  Bytes rest = F(t::text("second"));
  t::append(rest, F(t::close_frame(1000)));
  ASSERT_EQ(s.feed(rest), Session::FeedResult::ok);
  s.output_sent(first.size());
  const auto frames = parse_server(drain(s));
  EXPECT_EQ(parse_server(first)[0].payload, t::bytes("first"));
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().opcode, 0x8);
  EXPECT_EQ(frames.back().payload, t::close_payload(1000));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, t::bytes("second"));
  EXPECT_FALSE(s.queue_message(Opcode::text, t::bytes("late"))) << "nothing may follow a close";
  EXPECT_EQ(echo.received.size(), 2u);
  EXPECT_TRUE(s.close_received());
  EXPECT_TRUE(s.close_sent());
}

}  // namespace
