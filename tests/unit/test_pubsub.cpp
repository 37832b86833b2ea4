// Pub/sub protocol pieces: names, patterns, JSON commands (valid, malformed,
// truncated at every length, deeply nested, huge), answers, escaping, the
// delivered-message frame (JSON, text, invalid UTF-8, raw) and the
// `channels=` query.

#include "proto/pubsub.h"

#include <absl/strings/str_cat.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "proto/utf8.h"
#include "proto/ws_frame.h"
#include "test_support.h"

namespace {

using namespace rg::proto::pubsub;
namespace ws = rg::proto::ws;
using rg::test::bytes;

std::string_view sv(std::span<const std::uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// True when `text` is one valid JSON document (independent of the code under test's use).
bool json_valid(std::string_view text) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  return p.parse(simdjson::padded_string(text)).get(e) == simdjson::SUCCESS;
}

// ------------------------------------------------------------------ names

struct NameCase {
  std::string name;
  NameError error;
  std::size_t offset = 0;
};

class Names : public ::testing::TestWithParam<NameCase> {};

TEST_P(Names, Check) {
  const NameCheck c = check_name(GetParam().name);
  EXPECT_EQ(c.error, GetParam().error) << GetParam().name;
  if (c.error == NameError::bad_char) {
    EXPECT_EQ(c.offset, GetParam().offset);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, Names,
    ::testing::Values(NameCase{"a", NameError::none}, NameCase{"news.eu-west_1:x", NameError::none},
                      NameCase{"ABCxyz0189", NameError::none}, NameCase{std::string(128, 'a'), NameError::none},
                      NameCase{"", NameError::empty}, NameCase{std::string(129, 'a'), NameError::too_long},
                      NameCase{"a b", NameError::bad_char, 1}, NameCase{"news.*", NameError::bad_char, 5},
                      NameCase{"caf\xC3\xA9", NameError::bad_char, 3}, NameCase{"a/b", NameError::bad_char, 1},
                      NameCase{std::string("a\0b", 3), NameError::bad_char, 1},
                      NameCase{"\"", NameError::bad_char, 0}, NameCase{"a,b", NameError::bad_char, 1}));

TEST(Names, ErrorTextsAreDistinct) {
  EXPECT_EQ(name_error_text(NameError::empty), "empty");
  EXPECT_NE(name_error_text(NameError::too_long), name_error_text(NameError::bad_char));
}

// ------------------------------------------------------------------ patterns

struct PatternCase {
  std::string pattern;
  std::string channel;
  bool matches;
};

class Patterns : public ::testing::TestWithParam<PatternCase> {};

TEST_P(Patterns, Match) {
  EXPECT_EQ(pattern_matches(GetParam().pattern, GetParam().channel), GetParam().matches)
      << GetParam().pattern << " vs " << GetParam().channel;
}

INSTANTIATE_TEST_SUITE_P(
    Table, Patterns,
    ::testing::Values(PatternCase{"news", "news", true}, PatternCase{"news", "news.eu", false},
                      PatternCase{"news", "new", false}, PatternCase{"news.*", "news.eu", true},
                      PatternCase{"news.*", "news.eu.fr", true}, PatternCase{"news.*", "news", false},
                      PatternCase{"news.*", "news.", false}, PatternCase{"news.*", "newsy.eu", false},
                      PatternCase{"news.*", "xnews.eu", false}, PatternCase{"*", "anything", true},
                      PatternCase{"*", "", false}, PatternCase{"a.b.*", "a.b.c", true},
                      PatternCase{"a.b.*", "a.bc", false},
                      // invalid patterns match nothing
                      PatternCase{"news*", "news1", false}, PatternCase{"*.news", "x.news", false},
                      PatternCase{"n*s", "nes", false}, PatternCase{".*", "x", false},
                      PatternCase{"", "", false}, PatternCase{"news.**", "news.x", false}));

TEST(Patterns, Validity) {
  for (const char* p : {"*", "a", "news.*", "a.b.*", "x:y-z_1"}) EXPECT_TRUE(pattern_valid(p)) << p;
  for (const char* p : {"", ".*", "**", "news*", "*.x", "a*b", "news.*.x", "a b", "news.**"})
    EXPECT_FALSE(pattern_valid(p)) << p;
  EXPECT_TRUE(pattern_valid(std::string(128, 'a') + ".*"));
  EXPECT_FALSE(pattern_valid(std::string(129, 'a') + ".*"));
}

// ------------------------------------------------------------------ commands

struct CommandCase {
  std::string name;
  std::string input;
  ErrorCode error;
  CommandType type = CommandType::subscribe;
  std::string channel = {};
  std::string id = {};
};

void PrintTo(const CommandCase& c, std::ostream* os) { *os << c.name; }

class Commands : public ::testing::TestWithParam<CommandCase> {
 protected:
  static CommandParser& parser() {
    static CommandParser p;
    return p;
  }
};

TEST_P(Commands, Parse) {
  const CommandCase& c = GetParam();
  ASSERT_TRUE(parser().ready());
  const Command cmd = parser().parse(c.input);
  EXPECT_EQ(code_text(cmd.error), code_text(c.error)) << c.input << " -> " << cmd.message;
  if (cmd.ok()) {
    EXPECT_EQ(cmd.type, c.type);
    EXPECT_EQ(cmd.channel(), c.channel);
    EXPECT_EQ(cmd.id(), c.id);
  } else {
    EXPECT_FALSE(cmd.message.empty());
  }
}

std::vector<CommandCase> command_cases() {
  using E = ErrorCode;
  using T = CommandType;
  return {
      {"subscribe", R"({"type":"subscribe","channel":"a"})", E::none, T::subscribe, "a"},
      {"unsubscribe", R"({"type":"unsubscribe","channel":"news.eu"})", E::none, T::unsubscribe, "news.eu"},
      {"ack", R"({"type":"ack","id":"17-3"})", E::none, T::ack, "", "17-3"},
      {"whitespace", " \n{ \"channel\" : \"a\" ,\t\"type\" : \"subscribe\" }\r\n", E::none, T::subscribe, "a"},
      {"escaped_value", R"({"type":"sub\u0073cribe","channel":"\u0061"})", E::none, T::subscribe, "a"},
      {"unknown_field_ignored", R"({"type":"subscribe","channel":"a","x":{"y":[1,2]}})", E::none, T::subscribe, "a"},
      {"ack_ignores_channel", R"({"type":"ack","id":"i","channel":"bad channel"})", E::none, T::ack, "", "i"},
      {"max_channel", R"({"type":"subscribe","channel":")" + std::string(128, 'c') + "\"}", E::none, T::subscribe,
       std::string(128, 'c')},
      // malformed
      {"empty", "", E::malformed_json},
      {"spaces", "   ", E::malformed_json},
      {"garbage", "hello", E::malformed_json},
      {"truncated", R"({"type":"subscribe","channel":"a")", E::malformed_json},
      {"trailing_garbage", R"({"type":"subscribe","channel":"a"}x)", E::malformed_json},
      {"two_documents", R"({"type":"ack","id":"1"}{"type":"ack","id":"2"})", E::malformed_json},
      {"single_quotes", R"({'type':'subscribe'})", E::malformed_json},
      {"trailing_comma", R"({"type":"subscribe","channel":"a",})", E::malformed_json},
      {"nul_byte", std::string("{\"type\":\"ack\",\"id\":\"1\"}\0", 24), E::malformed_json},
      {"invalid_utf8", "{\"type\":\"subscribe\",\"channel\":\"\xFF\"}", E::malformed_json},
      {"raw_control_char", "{\"type\":\"subscribe\",\"channel\":\"a\x01\"}", E::malformed_json},
      {"deep_nesting", R"({"type":"ack","id":"1","x":)" + std::string(100, '[') + std::string(100, ']') + "}",
       E::malformed_json},
      {"huge", R"({"type":"subscribe","channel":"a","pad":")" + std::string(2000, 'x') + "\"}", E::too_large},
      {"array", R"(["subscribe","a"])", E::not_object},
      {"string", R"("subscribe")", E::not_object},
      {"number", "42", E::not_object},
      {"null", "null", E::not_object},
      {"duplicate_type", R"({"type":"ack","type":"subscribe","channel":"a"})", E::duplicate_field},
      {"duplicate_channel", R"({"type":"subscribe","channel":"a","channel":"b"})", E::duplicate_field},
      {"missing_type", R"({"channel":"a"})", E::missing_type},
      {"empty_object", "{}", E::missing_type},
      {"type_not_string", R"({"type":1,"channel":"a"})", E::invalid_type},
      {"type_null", R"({"type":null})", E::invalid_type},
      {"unknown_type", R"({"type":"publish","channel":"a"})", E::unknown_type},
      {"type_case", R"({"type":"Subscribe","channel":"a"})", E::unknown_type},
      {"missing_channel", R"({"type":"subscribe"})", E::missing_channel},
      {"channel_number", R"({"type":"subscribe","channel":7})", E::invalid_channel},
      {"channel_array", R"({"type":"unsubscribe","channel":["a"]})", E::invalid_channel},
      {"channel_empty", R"({"type":"subscribe","channel":""})", E::invalid_channel},
      {"channel_space", R"({"type":"subscribe","channel":"a b"})", E::invalid_channel},
      {"channel_pattern", R"({"type":"subscribe","channel":"news.*"})", E::invalid_channel},
      {"channel_escaped_nul", R"({"type":"subscribe","channel":"a\u0000"})", E::invalid_channel},
      {"channel_too_long", R"({"type":"subscribe","channel":")" + std::string(129, 'c') + "\"}",
       E::invalid_channel},
      {"missing_id", R"({"type":"ack"})", E::missing_id},
      {"id_number", R"({"type":"ack","id":5})", E::invalid_id},
      {"id_bad_char", R"({"type":"ack","id":"a/b"})", E::invalid_id},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, Commands, ::testing::ValuesIn(command_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(CommandsTruncated, EveryPrefixOfAValidCommandIsAnError) {
  CommandParser p;
  const std::string full = R"({"type":"subscribe","channel":"news.eu"})";
  for (std::size_t n = 0; n < full.size(); ++n) {
    const Command c = p.parse(std::string_view(full).substr(0, n));
    EXPECT_FALSE(c.ok()) << n;
  }
  EXPECT_TRUE(p.parse(full).ok());
}

TEST(CommandsTruncated, ResultOutlivesTheInputAndTheNextParse) {
  CommandParser p;
  std::string in = R"({"type":"subscribe","channel":"first"})";
  const Command a = p.parse(in);
  in.assign(in.size(), 'x');
  const Command b = p.parse(R"({"type":"subscribe","channel":"second"})");
  EXPECT_EQ(a.channel(), "first");
  EXPECT_EQ(b.channel(), "second");
}

TEST(CommandsTruncated, RandomGarbageNeverCrashes) {
  CommandParser p;
  std::uint32_t x = 12345;
  std::string s;
  for (int i = 0; i < 2000; ++i) {
    s.resize(x % 64);
    for (auto& ch : s) {
      x = x * 1103515245 + 12345;
      static constexpr char alphabet[] = "{}[]\":,tyepacknlu01 \\x\xC3";
      ch = alphabet[(x >> 16) % (sizeof alphabet - 1)];
    }
    const Command c = p.parse(s);
    if (!c.ok()) {
      EXPECT_FALSE(c.message.empty());
    }
  }
}

// ------------------------------------------------------------------ answers

TEST(Answers, SubscribedAndUnsubscribed) {
  std::array<char, answer_bytes_max> buf{};
  std::size_t n = build_subscribed(buf, "news.eu");
  EXPECT_EQ(std::string_view(buf.data(), n), R"({"type":"subscribed","channel":"news.eu"})");
  n = build_unsubscribed(buf, "a");
  EXPECT_EQ(std::string_view(buf.data(), n), R"({"type":"unsubscribed","channel":"a"})");
  n = build_subscribed(buf, std::string(128, 'z'));
  EXPECT_TRUE(json_valid(std::string_view(buf.data(), n)));
}

TEST(Answers, ErrorForEveryCodeIsValidJson) {
  std::array<char, answer_bytes_max> buf{};
  for (int c = 1; c <= static_cast<int>(ErrorCode::too_many_channels); ++c) {
    const auto code = static_cast<ErrorCode>(c);
    const std::size_t n = build_error(buf, code, "what \"was\" wrong\n");
    const std::string_view out(buf.data(), n);
    EXPECT_TRUE(json_valid(out)) << out;
    EXPECT_NE(out.find(std::string("\"code\":\"") + std::string(code_text(code)) + "\""), std::string_view::npos);
    EXPECT_NE(code_text(code), "unknown");
  }
  const std::size_t n = build_error(buf, ErrorCode::unknown_type, "x");
  EXPECT_EQ(std::string_view(buf.data(), n), R"({"type":"error","code":"unknown_type","message":"x"})");
}

TEST(Answers, LongMessageIsCutAtACodePoint) {
  std::array<char, answer_bytes_max> buf{};
  std::string msg;
  for (int i = 0; i < 400; ++i) msg += "\xE2\x82\xAC";  // 1200 bytes of euro signs
  const std::size_t n = build_error(buf, ErrorCode::malformed_json, msg);
  ASSERT_GT(n, 0u);
  const std::string_view out(buf.data(), n);
  EXPECT_TRUE(json_valid(out));
  EXPECT_TRUE(rg::proto::utf8_valid(bytes(out)));
  const std::string controls(600, '\x01');
  const std::size_t m = build_error(buf, ErrorCode::malformed_json, controls);
  ASSERT_GT(m, 0u);
  EXPECT_TRUE(json_valid(std::string_view(buf.data(), m)));
}

// ------------------------------------------------------------------ escaping

struct EscapeCase {
  std::string in;
  std::string out;
};

class Escape : public ::testing::TestWithParam<EscapeCase> {};

TEST_P(Escape, Escapes) {
  std::vector<char> buf(escaped_bytes_max(GetParam().in.size()) + 1);
  const std::size_t n = escape_json(buf, GetParam().in);
  EXPECT_EQ(std::string(buf.data(), n), GetParam().out);
  EXPECT_TRUE(json_valid(absl::StrCat("\"", std::string(buf.data(), n), "\"")));
}

INSTANTIATE_TEST_SUITE_P(
    Table, Escape,
    ::testing::Values(EscapeCase{"", ""}, EscapeCase{"plain", "plain"}, EscapeCase{"a\"b", "a\\\"b"},
                      EscapeCase{"back\\slash", "back\\\\slash"}, EscapeCase{"\n\r\t\b\f", "\\n\\r\\t\\b\\f"},
                      EscapeCase{std::string("\0\x01\x1f", 3), "\\u0000\\u0001\\u001f"},
                      EscapeCase{"\x7f", "\x7f"}, EscapeCase{"/", "/"},
                      EscapeCase{"caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80"},
                      EscapeCase{"\xE2\x80\xA8", "\xE2\x80\xA8"}));

TEST(Escape, TooSmallBufferReturnsZero) {
  std::array<char, 5> buf{};
  EXPECT_EQ(escape_json(buf, "abcdef"), 0u);
  EXPECT_EQ(escape_json(buf, "\x01"), 0u);
  EXPECT_EQ(escape_json(buf, "abcde"), 5u);
}

// ------------------------------------------------------------------ delivery

struct BodyCase {
  std::string name;
  std::string body;
  BodyKind kind;
  std::string data;  // expected "data" member text in the envelope
};

void PrintTo(const BodyCase& c, std::ostream* os) { *os << c.name; }

class Delivery : public ::testing::TestWithParam<BodyCase> {};

TEST_P(Delivery, ClassifyAndBuild) {
  const BodyCase& c = GetParam();
  BodyClassifier classifier(1024, 16);
  ASSERT_TRUE(classifier.ready());
  const auto body = bytes(c.body);
  const BodyKind kind = classifier.classify(body);
  EXPECT_EQ(static_cast<int>(kind), static_cast<int>(c.kind));

  std::vector<std::uint8_t> buf(message_frame_bytes_max(body.size()));
  const MessageFrame f = build_message_frame(buf, {"news.eu", "42", body, kind, Envelope::json, {}});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f.opcode, ws::Opcode::text);
  const std::string_view payload = sv(f.payload);
  const std::string expected = R"({"type":"message","channel":"news.eu","id":"42","data":)" + c.data +
                               (kind == BodyKind::binary ? R"(,"encoding":"base64"})" : "}");
  EXPECT_EQ(payload, expected);
  EXPECT_TRUE(json_valid(payload)) << payload;
  EXPECT_TRUE(rg::proto::utf8_valid(f.payload));

  // The frame is a complete unmasked server frame around the payload.
  const auto h = ws::decode_header(f.frame);
  ASSERT_EQ(h.status, ws::DecodeStatus::ok);
  EXPECT_TRUE(h.header.fin);
  EXPECT_FALSE(h.header.masked);
  EXPECT_EQ(h.header.opcode, 0x1);
  EXPECT_EQ(h.header.payload_len, f.payload.size());
  EXPECT_EQ(h.header.header_len + f.payload.size(), f.frame.size());
  EXPECT_EQ(f.frame.data() + h.header.header_len, f.payload.data());
}

std::vector<BodyCase> body_cases() {
  using K = BodyKind;
  return {
      {"object", R"({"price":1.5,"tags":["a"]})", K::json, R"({"price":1.5,"tags":["a"]})"},
      {"array", "[1,2,3]", K::json, "[1,2,3]"},
      {"number", "42", K::json, "42"},
      {"json_string", "\"hi\"", K::json, "\"hi\""},
      {"true", "true", K::json, "true"},
      {"null", "null", K::json, "null"},
      {"json_with_spaces", " {\"a\" : 1}\n", K::json, " {\"a\" : 1}\n"},
      {"json_unicode", "{\"w\":\"caf\xC3\xA9\"}", K::json, "{\"w\":\"caf\xC3\xA9\"}"},
      {"plain_text", "hello world", K::text, "\"hello world\""},
      {"empty", "", K::text, "\"\""},
      {"whitespace_only", "  ", K::text, "\"  \""},
      {"quotes", "say \"hi\"", K::text, R"("say \"hi\"")"},
      {"truncated_json", "{\"a\":", K::text, R"("{\"a\":")"},
      {"controls", "a\nb\x01", K::text, R"("a\nb\u0001")"},
      {"utf8_text", "\xE2\x82\xAC 5", K::text, "\"\xE2\x82\xAC 5\""},
      {"deep_json_is_text", absl::StrCat(std::string(40, '['), std::string(40, ']')), K::text,
       absl::StrCat("\"", std::string(40, '['), std::string(40, ']'), "\"")},
      {"invalid_utf8", "\xFF\xFE", K::binary, "\"//4=\""},
      {"truncated_utf8", "caf\xC3", K::binary, "\"Y2Fmww==\""},
      {"surrogate_utf8", "\xED\xA0\x80", K::binary, "\"7aCA\""},
      {"overlong", "\xC0\xAF", K::binary, "\"wK8=\""},
      {"nul_in_text", std::string("a\0b", 3), K::text, R"("a\u0000b")"},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, Delivery, ::testing::ValuesIn(body_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(DeliveryFrame, BodyOverClassifierLimitIsText) {
  BodyClassifier classifier(16);
  EXPECT_EQ(classifier.classify(bytes("[1,2,3]")), BodyKind::json);
  EXPECT_EQ(classifier.classify(bytes("[1,2,3,4,5,6,7,8,9]")), BodyKind::text);
}

TEST(DeliveryFrame, HeaderSizesAt125_126_65536) {
  BodyClassifier classifier(1 << 17);
  for (std::size_t payload_target : {100u, 125u, 126u, 200u, 65535u, 65536u, 70000u}) {
    const std::string prefix = R"({"type":"message","channel":"c","id":"1","data":"")";
    const std::size_t body_len = payload_target - (prefix.size() + 1);
    const auto body = bytes(std::string(body_len, 'x'));
    std::vector<std::uint8_t> buf(message_frame_bytes_max(body.size()));
    const MessageFrame f = build_message_frame(buf, {"c", "1", body, classifier.classify(body), Envelope::json, {}});
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(f.payload.size(), payload_target);
    const auto h = ws::decode_header(f.frame);
    ASSERT_EQ(h.status, ws::DecodeStatus::ok) << payload_target;
    EXPECT_EQ(h.header.payload_len, payload_target);
    EXPECT_EQ(h.header.header_len, payload_target < 126 ? 2 : payload_target < 65536 ? 4 : 10);
  }
}

TEST(DeliveryFrame, Raw) {
  std::vector<std::uint8_t> buf(message_frame_bytes_max(8));
  MessageFrame f = build_message_frame(buf, {"c", "1", bytes("hi"), BodyKind::text, Envelope::raw, {}});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f.opcode, ws::Opcode::text);
  EXPECT_EQ(sv(f.frame), std::string_view("\x81\x02hi", 4));
  const rg::test::Bytes raw{0xFF, 0x00};
  f = build_message_frame(buf, {"c", "1", raw, BodyKind::binary, Envelope::raw, {}});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f.opcode, ws::Opcode::binary);
  EXPECT_EQ(sv(f.frame), std::string_view("\x82\x02\xFF\x00", 4));
}

TEST(DeliveryFrame, TooSmallBufferGivesEmptyFrame) {
  const auto body = bytes("\"x\"");
  for (std::size_t size : {0u, 5u, 10u, 40u, 60u}) {
    std::vector<std::uint8_t> buf(size);
    EXPECT_FALSE(build_message_frame(buf, {"c", "1", body, BodyKind::json, Envelope::json, {}}).ok()) << size;
    EXPECT_FALSE(build_message_frame(buf, {"c", "1", body, BodyKind::binary, Envelope::json, {}}).ok()) << size;
  }
  // Exactly enough: 10-byte gap + payload.
  std::vector<std::uint8_t> big(200);
  const MessageFrame f = build_message_frame(big, {"c", "1", body, BodyKind::json, Envelope::json, {}});
  std::vector<std::uint8_t> exact(10 + f.payload.size());
  EXPECT_TRUE(build_message_frame(exact, {"c", "1", body, BodyKind::json, Envelope::json, {}}).ok());
  exact.pop_back();
  EXPECT_FALSE(build_message_frame(exact, {"c", "1", body, BodyKind::json, Envelope::json, {}}).ok());
}

TEST(DeliveryFrame, WorstCaseBodiesFitTheAdvertisedSize) {
  for (const std::string& body : {std::string(300, '\x01'), std::string(300, '\xFF'), std::string(128, '"')}) {
    const auto b = bytes(body);
    BodyClassifier classifier;
    std::vector<std::uint8_t> buf(message_frame_bytes_max(b.size()));
    const MessageFrame f = build_message_frame(
        buf, {std::string(128, 'c'), std::string(128, 'i'), b, classifier.classify(b), Envelope::json, {}});
    ASSERT_TRUE(f.ok());
    EXPECT_TRUE(json_valid(sv(f.payload)));
  }
}

// ------------------------------------------------------------------ query

struct QueryCase {
  std::string name;
  std::string query;
  ErrorCode error;
  std::vector<std::string> channels = {};
};

void PrintTo(const QueryCase& c, std::ostream* os) { *os << c.name; }

class Query : public ::testing::TestWithParam<QueryCase> {};

TEST_P(Query, Parse) {
  const QueryCase& c = GetParam();
  ChannelList list;
  const QueryResult r = parse_channels_query(c.query, list);
  EXPECT_EQ(code_text(r.error), code_text(c.error)) << c.query << " -> " << r.message;
  if (r.ok()) {
    std::vector<std::string> got;
    for (std::size_t i = 0; i < list.size(); ++i) got.emplace_back(list[i]);
    EXPECT_EQ(got, c.channels);
  } else {
    EXPECT_FALSE(r.message.empty());
  }
}

std::string many_channels(int n) {
  std::string q = "channels=";
  for (int i = 0; i < n; ++i) {
    // Appended piece by piece: GCC 12 at -O3 raises a false -Wrestrict on "literal" + std::string&&.
    if (i > 0) q += ',';
    q += 'c';
    q += std::to_string(i);
  }
  return q;
}

std::vector<QueryCase> query_cases() {
  using E = ErrorCode;
  return {
      {"none", "", E::none, {}},
      {"other_params", "token=abc&x=1", E::none, {}},
      {"one", "channels=a", E::none, {"a"}},
      {"two", "channels=a,b", E::none, {"a", "b"}},
      {"with_others", "token=x.y.z&channels=news.eu,chat:1&v=2", E::none, {"news.eu", "chat:1"}},
      {"percent_comma", "channels=a%2Cb", E::none, {"a", "b"}},
      {"percent_lower", "channels=%61%2cb", E::none, {"a", "b"}},
      {"repeated_param_merges", "channels=a&channels=b,a", E::none, {"a", "b"}},
      {"duplicates", "channels=a,a,a", E::none, {"a"}},
      {"prefix_not_key", "xchannels=a&channels_x=b", E::none, {}},
      {"empty_value", "channels=", E::invalid_channel},
      {"empty_item", "channels=a,,b", E::invalid_channel},
      {"trailing_comma", "channels=a,", E::invalid_channel},
      {"bad_char", "channels=a b", E::invalid_channel},
      {"plus_is_not_space", "channels=a+b", E::invalid_channel},
      {"percent_space", "channels=a%20b", E::invalid_channel},
      {"pattern", "channels=news.*", E::invalid_channel},
      {"bad_percent", "channels=a%2", E::invalid_channel},
      {"bad_percent_hex", "channels=a%zz", E::invalid_channel},
      {"percent_nul", "channels=a%00", E::invalid_channel},
      {"too_long_name", std::string("channels=").append(129, 'a'), E::invalid_channel},
      {"too_many", many_channels(65), E::too_many_channels},
      {"too_long_value", std::string("channels=").append(5000, 'a'), E::too_many_channels},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, Query, ::testing::ValuesIn(query_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(QueryMax, SixtyFourChannelsKept) {
  ChannelList list;
  ASSERT_TRUE(parse_channels_query(many_channels(64), list).ok());
  EXPECT_EQ(list.size(), 64u);
  EXPECT_EQ(list[63], "c63");
  EXPECT_TRUE(list.contains("c0"));
  EXPECT_FALSE(list.contains("c64"));
}

TEST(DeliveryFrame, UserEnvelopeNamesTheUser) {
  std::vector<std::uint8_t> buf(message_frame_bytes_max(16));
  const MessageFrame f =
      build_message_frame(buf, {"ignored", "9", bytes("{\"a\":1}"), BodyKind::json, Envelope::json, "alice"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(sv(f.payload), R"({"type":"message","user":"alice","id":"9","data":{"a":1}})");
}

TEST(QueryParam, FirstValueRawAndPresence) {
  struct Case {
    const char* query;
    const char* name;
    bool found;
    const char* value;
  } cases[] = {
      {"", "token", false, ""},
      {"token=a.b.c", "token", true, "a.b.c"},
      {"channels=x&token=a.b.c&token=z", "token", true, "a.b.c"},
      {"tokens=1&xtoken=2", "token", false, ""},
      {"token=", "token", true, ""},
      {"a=1&token", "token", true, ""},
      {"token=a%2Eb", "token", true, "a%2Eb"},
  };
  for (const auto& c : cases) {
    bool found = true;
    EXPECT_EQ(query_param(c.query, c.name, found), c.value) << c.query;
    EXPECT_EQ(found, c.found) << c.query;
  }
}

}  // namespace
