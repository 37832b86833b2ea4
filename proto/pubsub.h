// Pub/sub client protocol, the pure parts: channel/user name rules, channel
// patterns (what a token may subscribe to), the `?channels=` query, JSON
// commands from clients, and the JSON frames the server sends back.
// docs/protocol.md is the client-facing description of all of this.
//
// Nothing here throws, touches a socket or allocates on the data path.  The
// two JSON-parsing classes (CommandParser, BodyClassifier) allocate their
// simdjson buffers once, in their constructor; one of each per worker.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "proto/ws_frame.h"

namespace rg::proto::pubsub {

// ---------------------------------------------------------------- names

// Channel names, user names (JWT `sub`) and message ids: 1..128 bytes of
// [A-Za-z0-9._:-].  No escaping is ever needed to put one in JSON, a log line
// or a metric label.
inline constexpr std::size_t name_bytes_max = 128;

enum class NameError : std::uint8_t { none, empty, too_long, bad_char };

struct NameCheck {
  NameError error = NameError::none;
  std::size_t offset = 0;  // with bad_char: byte offset of the first bad byte
  [[nodiscard]] bool ok() const noexcept { return error == NameError::none; }
};

[[nodiscard]] constexpr bool name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == ':' || c == '-';
}
[[nodiscard]] NameCheck check_name(std::string_view name) noexcept;
// "empty", "longer than 128 bytes", "character not in [A-Za-z0-9._:-]".
[[nodiscard]] std::string_view name_error_text(NameError e) noexcept;

// ---------------------------------------------------------------- patterns

// A channel pattern (an entry of the JWT `channels` claim) is one of:
//   "*"          every channel;
//   "P.*"        every channel that starts with "P." and has at least one
//                more byte ("news.*" matches "news.eu" and "news.eu.fr",
//                not "news" nor "news."); P is a valid name;
//   a name       exactly that channel.
// '*' anywhere else makes the pattern invalid; there is no other wildcard.
[[nodiscard]] bool pattern_valid(std::string_view pattern) noexcept;
// `channel` is assumed valid (check_name); an invalid pattern matches nothing.
[[nodiscard]] bool pattern_matches(std::string_view pattern, std::string_view channel) noexcept;

// ---------------------------------------------------------------- errors

// Sent to the client as {"type":"error","code":"<code_text>","message":...}.
enum class ErrorCode : std::uint8_t {
  none,
  too_large,          // command frame over command_bytes_max
  malformed_json,     // not JSON (includes invalid UTF-8 and nesting over the depth limit)
  not_object,         // JSON, but not an object
  duplicate_field,    // a known field given twice
  missing_type,
  invalid_type,       // "type" is not a string
  unknown_type,
  missing_channel,
  invalid_channel,    // not a string, or not a valid name
  missing_id,
  invalid_id,
  forbidden_channel,  // valid, but no pattern of the token allows it (server-side check)
  too_many_channels,  // over channels_max (query or subscriptions)
};
[[nodiscard]] std::string_view code_text(ErrorCode c) noexcept;

// ---------------------------------------------------------------- commands

inline constexpr std::size_t command_bytes_max = 1024;
inline constexpr std::size_t command_depth_max = 4;

enum class CommandType : std::uint8_t { subscribe, unsubscribe, ack };

// A parsed command or why there is none.  Strings are copied in, so the
// result outlives the frame and the parser.
struct Command {
  ErrorCode error = ErrorCode::none;
  std::string_view message;  // with an error: static text naming what was wrong
  CommandType type = CommandType::subscribe;
  std::uint8_t channel_len = 0;
  std::uint8_t id_len = 0;
  std::array<char, name_bytes_max> channel_buf{};
  std::array<char, name_bytes_max> id_buf{};

  [[nodiscard]] bool ok() const noexcept { return error == ErrorCode::none; }
  [[nodiscard]] std::string_view channel() const noexcept { return {channel_buf.data(), channel_len}; }
  [[nodiscard]] std::string_view id() const noexcept { return {id_buf.data(), id_len}; }
};

// Parses one client text message (a whole message, already reassembled and
// UTF-8 checked or not: invalid UTF-8 is a malformed_json error here).
//   {"type":"subscribe","channel":C}  {"type":"unsubscribe","channel":C}
//   {"type":"ack","id":I}
// Unknown fields are ignored (forward compatibility); a known field given
// twice is an error.
class CommandParser {
 public:
  CommandParser() noexcept;
  ~CommandParser();
  CommandParser(const CommandParser&) = delete;
  CommandParser& operator=(const CommandParser&) = delete;

  // False if the constructor could not allocate; parse() then answers
  // malformed_json to everything.  Check once at start-up.
  [[nodiscard]] bool ready() const noexcept;
  [[nodiscard]] Command parse(std::string_view frame) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- answers

// Longest answer frame payload; callers size buffers with it.
inline constexpr std::size_t answer_bytes_max = 512;
using AnswerBuffer = std::span<char, answer_bytes_max>;

// {"type":"subscribed","channel":C} / {"type":"unsubscribed","channel":C}.
// `channel` must be a valid name (it is not escaped).  Return the length.
std::size_t build_subscribed(AnswerBuffer out, std::string_view channel) noexcept;
std::size_t build_unsubscribed(AnswerBuffer out, std::string_view channel) noexcept;
// {"type":"error","code":"<code>","message":M}; M is escaped and cut (at a
// code point boundary) to fit.
std::size_t build_error(AnswerBuffer out, ErrorCode code, std::string_view message) noexcept;

// ---------------------------------------------------------------- JSON text

// Appends `s` as the inside of a JSON string (no quotes): '"', '\\' and
// control bytes are escaped; valid UTF-8 is copied.  Invalid UTF-8 must not
// be passed (see BodyKind::binary).  Returns bytes written, or 0 with
// `s` non-empty when `out` is too small.
std::size_t escape_json(std::span<char> out, std::string_view s) noexcept;
// Worst case of escape_json: every byte becomes \u00XX.
[[nodiscard]] constexpr std::size_t escaped_bytes_max(std::size_t n) noexcept { return 6 * n; }

// ---------------------------------------------------------------- delivery

// What a published body is, decided once per publish.
enum class BodyKind : std::uint8_t {
  json,    // valid JSON (RFC 8259, any top-level value): embedded as is
  text,    // valid UTF-8, not JSON: embedded as an escaped JSON string
  binary,  // invalid UTF-8: embedded as a base64 string, plus "encoding":"base64"
};

// Validates bodies with simdjson.  Bodies over `body_bytes_max` or nested
// deeper than `depth_max` are never `json` (they are text or binary).
class BodyClassifier {
 public:
  explicit BodyClassifier(std::size_t body_bytes_max = 64 * 1024, std::size_t depth_max = 64) noexcept;
  ~BodyClassifier();
  BodyClassifier(const BodyClassifier&) = delete;
  BodyClassifier& operator=(const BodyClassifier&) = delete;

  [[nodiscard]] bool ready() const noexcept;
  [[nodiscard]] BodyKind classify(std::span<const std::uint8_t> body) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// How a channel's messages go out.  Which channels are raw is server
// configuration (by channel prefix; pattern_matches() serves for that).
enum class Envelope : std::uint8_t {
  json,  // {"type":"message","channel":C,"id":I,"data":...}, a text frame
  raw,   // the body as is: a text frame if valid UTF-8, else a binary frame
};

struct MessageSpec {
  std::string_view channel;  // valid name (ignored when `user` is set)
  std::string_view id;       // valid name
  std::span<const std::uint8_t> body;
  BodyKind kind = BodyKind::text;  // from BodyClassifier (ignored for raw, except binary -> binary frame)
  Envelope envelope = Envelope::json;
  // A message sent to a user rather than a channel: the envelope names
  // "user":U instead of "channel":C.  Valid name or empty.
  std::string_view user = {};
};

// Bytes a buffer needs for build_message_frame(), header included.
[[nodiscard]] std::size_t message_frame_bytes_max(std::size_t body_bytes) noexcept;

// One delivered message, built once and sent to every subscriber as is.
// `frame` is the whole unmasked server frame (header + payload, FIN set);
// `payload` is its tail, for senders that frame it themselves (wslay).
struct MessageFrame {
  std::span<const std::uint8_t> frame;
  std::span<const std::uint8_t> payload;
  ws::Opcode opcode = ws::Opcode::text;
  [[nodiscard]] bool ok() const noexcept { return !frame.empty(); }
};

// Builds into `out` (sized with message_frame_bytes_max()).  The payload is
// written after a reserved 10-byte gap and the header right-aligned before
// it, so nothing is copied twice.  Returns an empty frame if `out` is too
// small.
[[nodiscard]] MessageFrame build_message_frame(std::span<std::uint8_t> out, const MessageSpec& m) noexcept;

// ---------------------------------------------------------------- query

inline constexpr std::size_t channels_max = 64;          // per connect query
inline constexpr std::size_t query_value_bytes_max = 4096;  // decoded `channels` value(s)

// The channels named at connect.  Fixed storage, no allocation.
class ChannelList {
 public:
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] std::string_view operator[](std::size_t i) const noexcept {
    return {buf_.data() + start_[i], len_[i]};
  }
  [[nodiscard]] bool contains(std::string_view name) const noexcept;
  // Adds a valid name unless present.  False when full.
  bool add(std::string_view name) noexcept;
  void clear() noexcept { count_ = 0, used_ = 0; }

 private:
  std::array<char, query_value_bytes_max> buf_{};
  std::array<std::uint16_t, channels_max> start_{};
  std::array<std::uint8_t, channels_max> len_{};
  std::size_t count_ = 0;
  std::size_t used_ = 0;
};

struct QueryResult {
  ErrorCode error = ErrorCode::none;
  std::string_view message;
  [[nodiscard]] bool ok() const noexcept { return error == ErrorCode::none; }
};

// The raw (not percent-decoded) value of the first `name=` parameter, or
// empty.  For values that never need decoding, such as a JWT (base64url and
// '.'); `found` tells an empty value from a missing one.
[[nodiscard]] std::string_view query_param(std::string_view query, std::string_view name, bool& found) noexcept;

// Reads every `channels=` parameter of a query string (the part after '?',
// without the '#fragment').  Each value is percent-decoded, then split on
// ','; every item must be a valid name (so "a,,b" and "a," are errors).
// Duplicates are merged.  Other parameters are ignored.  `out` is cleared.
[[nodiscard]] QueryResult parse_channels_query(std::string_view query, ChannelList& out) noexcept;

}  // namespace rg::proto::pubsub
