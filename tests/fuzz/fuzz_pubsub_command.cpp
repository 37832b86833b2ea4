// proto/pubsub.h: CommandParser (client JSON commands), the answers built
// for them (build_subscribed/build_unsubscribed/build_error, escape_json),
// names and channel patterns.
//
// Input: [split] [frame...]
//   split  where the frame is cut into a pattern and a channel for the
//          pattern checks
// The command is parsed twice (the parser is reused, as per worker); its
// error code is checked against a second reading of the JSON with simdjson;
// every answer must be valid JSON that reads back as what was put in.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "fuzz_support.h"
#include "proto/pubsub.h"
#include "proto/utf8.h"

namespace {

using namespace rg::proto::pubsub;

simdjson::dom::parser& reader() {
  static simdjson::dom::parser p;
  return p;
}

// What parse() must answer, from the JSON as simdjson reads it with the same
// depth limit.
ErrorCode expected_error(std::string_view frame) {
  if (frame.size() > command_bytes_max) return ErrorCode::too_large;
  static simdjson::dom::parser depth_limited = [] {
    simdjson::dom::parser p;
    if (p.allocate(command_bytes_max, command_depth_max) != simdjson::SUCCESS) std::abort();
    return p;
  }();
  const simdjson::padded_string padded(frame);
  simdjson::dom::element root;
  if (depth_limited.parse(padded).get(root)) return ErrorCode::malformed_json;
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) return ErrorCode::not_object;
  int type_n = 0, channel_n = 0, id_n = 0;
  std::string_view type, channel, id;
  bool type_str = false, channel_str = false, id_str = false;
  for (const auto f : obj) {
    if (f.key == "type") ++type_n, type_str = f.value.get_string().get(type) == simdjson::SUCCESS;
    else if (f.key == "channel") ++channel_n, channel_str = f.value.get_string().get(channel) == simdjson::SUCCESS;
    else if (f.key == "id") ++id_n, id_str = f.value.get_string().get(id) == simdjson::SUCCESS;
    if (type_n > 1 || channel_n > 1 || id_n > 1) return ErrorCode::duplicate_field;
  }
  if (type_n == 0) return ErrorCode::missing_type;
  if (!type_str) return ErrorCode::invalid_type;
  if (type == "subscribe" || type == "unsubscribe") {
    if (channel_n == 0) return ErrorCode::missing_channel;
    if (!channel_str || !check_name(channel).ok()) return ErrorCode::invalid_channel;
    return ErrorCode::none;
  }
  if (type == "ack") {
    if (id_n == 0) return ErrorCode::missing_id;
    if (!id_str || !check_name(id).ok()) return ErrorCode::invalid_id;
    return ErrorCode::none;
  }
  return ErrorCode::unknown_type;
}

// Reads an answer back: valid JSON, an object with string members.
simdjson::dom::object read_answer(std::string_view json) {
  FUZZ_CHECK(rg::proto::utf8_valid(rg::fuzz::bytes(json)));
  simdjson::dom::element root;
  FUZZ_CHECK(reader().parse(json.data(), json.size()).get(root) == simdjson::SUCCESS);
  simdjson::dom::object obj;
  FUZZ_CHECK(root.get_object().get(obj) == simdjson::SUCCESS);
  return obj;
}

std::string_view member(simdjson::dom::object obj, std::string_view key) {
  std::string_view v;
  FUZZ_CHECK(obj[key].get_string().get(v) == simdjson::SUCCESS);
  return v;
}

void check_command(std::string_view frame) {
  static CommandParser parser;
  FUZZ_CHECK(parser.ready());
  const Command c = parser.parse(frame);
  const Command again = parser.parse(frame);
  FUZZ_CHECK(again.error == c.error && again.type == c.type && again.channel() == c.channel() &&
             again.id() == c.id() && again.message == c.message);
  FUZZ_CHECK(c.error == expected_error(frame));

  std::array<char, answer_bytes_max> buf{};
  if (!c.ok()) {
    FUZZ_CHECK(!c.message.empty() && code_text(c.error) != "none" && code_text(c.error) != "unknown");
    const std::size_t n = build_error(buf, c.error, c.message);
    FUZZ_CHECK(n > 0);
    const auto obj = read_answer({buf.data(), n});
    FUZZ_CHECK(member(obj, "type") == "error" && member(obj, "code") == code_text(c.error) &&
               member(obj, "message") == c.message);
    return;
  }
  switch (c.type) {
    case CommandType::subscribe:
    case CommandType::unsubscribe: {
      FUZZ_CHECK(check_name(c.channel()).ok() && c.id().empty());
      const bool sub = c.type == CommandType::subscribe;
      const std::size_t n = sub ? build_subscribed(buf, c.channel()) : build_unsubscribed(buf, c.channel());
      FUZZ_CHECK(n > 0);
      const auto obj = read_answer({buf.data(), n});
      FUZZ_CHECK(member(obj, "type") == (sub ? "subscribed" : "unsubscribed") && member(obj, "channel") == c.channel());
      break;
    }
    case CommandType::ack:
      FUZZ_CHECK(check_name(c.id()).ok() && c.channel().empty());
      break;
  }
}

// build_error with any valid UTF-8 message: valid JSON whose message is the
// longest prefix that fits, cut at a code point.
void check_error_message(std::string_view message) {
  if (!rg::proto::utf8_valid(rg::fuzz::bytes(message))) return;
  std::array<char, answer_bytes_max> buf{};
  const std::size_t n = build_error(buf, ErrorCode::malformed_json, message);
  FUZZ_CHECK(n > 0 && n <= buf.size());
  const std::string_view got = member(read_answer({buf.data(), n}), "message");
  FUZZ_CHECK(message.starts_with(got));
  if (got.size() < message.size()) FUZZ_CHECK(got.size() >= (answer_bytes_max - 64) / 6 - 4);

  // escape_json: reads back as the input; a buffer one byte short gets 0.
  std::string out(escaped_bytes_max(message.size()) + 2, '\0');
  const std::size_t m = escape_json({out.data() + 1, out.size() - 2}, message);
  FUZZ_CHECK(m > 0 || message.empty());
  out[0] = '"';
  out[m + 1] = '"';
  out.resize(m + 2);
  simdjson::dom::element e;
  std::string_view s;
  FUZZ_CHECK(reader().parse(out).get(e) == simdjson::SUCCESS && e.get_string().get(s) == simdjson::SUCCESS);
  FUZZ_CHECK(s == message);
  if (m > 0) {
    std::string small(m - 1, '\0');
    FUZZ_CHECK(escape_json(small, message) == 0);
  }
}

void check_names(std::string_view pattern, std::string_view channel) {
  const NameCheck c = check_name(channel);
  FUZZ_CHECK(c.ok() == (!channel.empty() && channel.size() <= name_bytes_max &&
                        std::all_of(channel.begin(), channel.end(), name_char)));
  if (c.error == NameError::bad_char) FUZZ_CHECK(c.offset < channel.size() && !name_char(channel[c.offset]));
  FUZZ_CHECK(!name_error_text(c.error).empty());
  if (pattern_matches(pattern, channel)) FUZZ_CHECK(pattern_valid(pattern));
  if (!c.ok()) return;
  FUZZ_CHECK(pattern_valid(channel) && pattern_matches(channel, channel));
  FUZZ_CHECK(pattern_matches("*", channel));
  // Every "P.*" built from a dot in the channel matches it.
  for (std::size_t dot = channel.find('.'); dot != std::string_view::npos; dot = channel.find('.', dot + 1)) {
    const std::string p = std::string(channel.substr(0, dot)) + ".*";
    if (dot > 0 && dot + 1 < channel.size()) FUZZ_CHECK(pattern_matches(p, channel));
  }
  if (pattern_valid(pattern) && pattern != "*" && !pattern.ends_with(".*"))
    FUZZ_CHECK(pattern_matches(pattern, channel) == (pattern == channel));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t split = in.byte();
  const std::string_view frame = rg::fuzz::chars(in.rest());
  check_command(frame);
  check_error_message(frame);
  const std::size_t cut = std::min<std::size_t>(split, frame.size());
  check_names(frame.substr(0, cut), frame.substr(cut));
  return 0;
}
