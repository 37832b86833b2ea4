#include "proto/pubsub.h"

#include <openssl/base64.h>

#include <algorithm>
#include <cstring>
#include <new>

// Error codes only: no simdjson call on our paths may throw.
#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "proto/utf8.h"

namespace rg::proto::pubsub {

// ---------------------------------------------------------------- names

NameCheck check_name(std::string_view name) noexcept {
  if (name.empty()) return {NameError::empty, 0};
  if (name.size() > name_bytes_max) return {NameError::too_long, name_bytes_max};
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i])) return {NameError::bad_char, i};
  return {};
}

std::string_view name_error_text(NameError e) noexcept {
  switch (e) {
    case NameError::none: return "ok";
    case NameError::empty: return "empty";
    case NameError::too_long: return "longer than 128 bytes";
    case NameError::bad_char: return "character not in [A-Za-z0-9._:-]";
  }
  return "?";
}

// ---------------------------------------------------------------- patterns

bool pattern_valid(std::string_view pattern) noexcept {
  if (pattern == "*") return true;
  if (pattern.size() >= 3 && pattern.ends_with(".*")) pattern.remove_suffix(2);
  return check_name(pattern).ok();
}

bool pattern_matches(std::string_view pattern, std::string_view channel) noexcept {
  if (!pattern_valid(pattern)) return false;
  if (pattern == "*") return !channel.empty();
  if (pattern.ends_with(".*")) {
    const std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the '.'
    return channel.size() > prefix.size() && channel.starts_with(prefix);
  }
  return pattern == channel;
}

// ---------------------------------------------------------------- errors

std::string_view code_text(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::none: return "none";
    case ErrorCode::too_large: return "too_large";
    case ErrorCode::malformed_json: return "malformed_json";
    case ErrorCode::not_object: return "not_object";
    case ErrorCode::duplicate_field: return "duplicate_field";
    case ErrorCode::missing_type: return "missing_type";
    case ErrorCode::invalid_type: return "invalid_type";
    case ErrorCode::unknown_type: return "unknown_type";
    case ErrorCode::missing_channel: return "missing_channel";
    case ErrorCode::invalid_channel: return "invalid_channel";
    case ErrorCode::missing_id: return "missing_id";
    case ErrorCode::invalid_id: return "invalid_id";
    case ErrorCode::forbidden_channel: return "forbidden_channel";
    case ErrorCode::too_many_channels: return "too_many_channels";
  }
  return "unknown";
}

// ---------------------------------------------------------------- commands

struct CommandParser::Impl {
  simdjson::dom::parser parser{command_bytes_max};
  std::array<std::uint8_t, command_bytes_max + simdjson::SIMDJSON_PADDING> padded{};
  bool ready = false;
};

CommandParser::CommandParser() noexcept : impl_(new (std::nothrow) Impl) {
  if (impl_) impl_->ready = impl_->parser.allocate(command_bytes_max, command_depth_max) == simdjson::SUCCESS;
}
CommandParser::~CommandParser() = default;
bool CommandParser::ready() const noexcept { return impl_ && impl_->ready; }

namespace {

Command fail(ErrorCode code, std::string_view message) noexcept {
  Command c;
  c.error = code;
  c.message = message;
  return c;
}

std::string_view json_error_text(simdjson::error_code e) noexcept {
  switch (e) {
    case simdjson::DEPTH_ERROR: return "JSON nested too deeply";
    case simdjson::UTF8_ERROR: return "invalid UTF-8";
    case simdjson::EMPTY: return "empty message";
    case simdjson::UNCLOSED_STRING: return "unclosed string";
    default: return "not valid JSON";
  }
}

std::string_view channel_error_text(NameError e) noexcept {
  switch (e) {
    case NameError::empty: return "channel is empty";
    case NameError::too_long: return "channel is longer than 128 bytes";
    default: return "channel has a character not in [A-Za-z0-9._:-]";
  }
}

std::string_view id_error_text(NameError e) noexcept {
  switch (e) {
    case NameError::empty: return "id is empty";
    case NameError::too_long: return "id is longer than 128 bytes";
    default: return "id has a character not in [A-Za-z0-9._:-]";
  }
}

// One known string field of a command: seen at most once.
struct Field {
  bool seen = false;
  bool is_string = false;
  std::string_view value;  // points into the parser's string buffer
};

}  // namespace

Command CommandParser::parse(std::string_view frame) noexcept {
  if (frame.size() > command_bytes_max) return fail(ErrorCode::too_large, "command longer than 1024 bytes");
  if (!ready()) return fail(ErrorCode::malformed_json, "parser not available");
  std::memcpy(impl_->padded.data(), frame.data(), frame.size());
  simdjson::dom::element root;
  if (const auto err = impl_->parser.parse(impl_->padded.data(), frame.size(), false).get(root))
    return fail(ErrorCode::malformed_json, json_error_text(err));
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) return fail(ErrorCode::not_object, "command is not a JSON object");

  Field type, channel, id;
  for (const auto field : obj) {
    Field* f = field.key == "type" ? &type : field.key == "channel" ? &channel : field.key == "id" ? &id : nullptr;
    if (f == nullptr) continue;  // unknown fields are ignored
    if (f->seen) return fail(ErrorCode::duplicate_field, "a field appears twice");
    f->seen = true;
    f->is_string = field.value.get_string().get(f->value) == simdjson::SUCCESS;
  }
  if (!type.seen) return fail(ErrorCode::missing_type, "no \"type\" field");
  if (!type.is_string) return fail(ErrorCode::invalid_type, "\"type\" is not a string");

  Command c;
  if (type.value == "subscribe" || type.value == "unsubscribe") {
    c.type = type.value == "subscribe" ? CommandType::subscribe : CommandType::unsubscribe;
    if (!channel.seen) return fail(ErrorCode::missing_channel, "no \"channel\" field");
    if (!channel.is_string) return fail(ErrorCode::invalid_channel, "\"channel\" is not a string");
    const NameCheck check = check_name(channel.value);
    if (!check.ok()) return fail(ErrorCode::invalid_channel, channel_error_text(check.error));
    std::memcpy(c.channel_buf.data(), channel.value.data(), channel.value.size());
    c.channel_len = static_cast<std::uint8_t>(channel.value.size());
    return c;
  }
  if (type.value == "ack") {
    c.type = CommandType::ack;
    if (!id.seen) return fail(ErrorCode::missing_id, "no \"id\" field");
    if (!id.is_string) return fail(ErrorCode::invalid_id, "\"id\" is not a string");
    const NameCheck check = check_name(id.value);
    if (!check.ok()) return fail(ErrorCode::invalid_id, id_error_text(check.error));
    std::memcpy(c.id_buf.data(), id.value.data(), id.value.size());
    c.id_len = static_cast<std::uint8_t>(id.value.size());
    return c;
  }
  return fail(ErrorCode::unknown_type, "\"type\" is not subscribe, unsubscribe or ack");
}

// ---------------------------------------------------------------- JSON text

namespace {

// Appends to a fixed buffer; remembers if anything did not fit.
struct Writer {
  char* data;
  std::size_t cap;
  std::size_t len = 0;
  bool overflow = false;

  void put(std::string_view s) noexcept {
    if (overflow || s.size() > cap - len) {
      overflow = true;
      return;
    }
    std::memcpy(data + len, s.data(), s.size());
    len += s.size();
  }
  void put_escaped(std::string_view s) noexcept {
    if (overflow) return;
    const std::size_t n = escape_json({data + len, cap - len}, s);
    if (n == 0 && !s.empty()) overflow = true;
    len += n;
  }
};

}  // namespace

std::size_t escape_json(std::span<char> out, std::string_view s) noexcept {
  static constexpr char hex[] = "0123456789abcdef";
  std::size_t n = 0;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    char esc = 0;
    switch (c) {
      case '"': esc = '"'; break;
      case '\\': esc = '\\'; break;
      case '\n': esc = 'n'; break;
      case '\r': esc = 'r'; break;
      case '\t': esc = 't'; break;
      case '\b': esc = 'b'; break;
      case '\f': esc = 'f'; break;
      default: break;
    }
    if (esc != 0) {
      if (out.size() - n < 2) return 0;
      out[n++] = '\\';
      out[n++] = esc;
    } else if (c < 0x20) {
      if (out.size() - n < 6) return 0;
      out[n++] = '\\', out[n++] = 'u', out[n++] = '0', out[n++] = '0';
      out[n++] = hex[c >> 4];
      out[n++] = hex[c & 0xF];
    } else {
      if (out.size() == n) return 0;
      out[n++] = ch;
    }
  }
  return n;
}

// ---------------------------------------------------------------- answers

namespace {

std::size_t build_channel_answer(AnswerBuffer out, std::string_view type, std::string_view channel) noexcept {
  Writer w{out.data(), out.size()};
  w.put(R"({"type":")");
  w.put(type);
  w.put(R"(","channel":")");
  w.put(channel.substr(0, name_bytes_max));
  w.put(R"("})");
  return w.overflow ? 0 : w.len;
}

}  // namespace

std::size_t build_subscribed(AnswerBuffer out, std::string_view channel) noexcept {
  return build_channel_answer(out, "subscribed", channel);
}
std::size_t build_unsubscribed(AnswerBuffer out, std::string_view channel) noexcept {
  return build_channel_answer(out, "unsubscribed", channel);
}

std::size_t build_error(AnswerBuffer out, ErrorCode code, std::string_view message) noexcept {
  static constexpr std::string_view tail = R"("})";
  Writer w{out.data(), out.size()};
  w.put(R"({"type":"error","code":")");
  w.put(code_text(code));
  w.put(R"(","message":")");
  // Cut the message so that its escaped form and the tail fit; cut at a code
  // point boundary so the frame stays valid UTF-8.
  const std::size_t room = (w.cap - w.len - tail.size()) / 6;
  std::string_view m = message.substr(0, room);
  if (m.size() < message.size())
    while (!m.empty() && (static_cast<unsigned char>(message[m.size()]) & 0xC0) == 0x80) m.remove_suffix(1);
  w.put_escaped(m);
  w.put(tail);
  return w.overflow ? 0 : w.len;
}

// ---------------------------------------------------------------- delivery

struct BodyClassifier::Impl {
  // The parser's own capacity limit stays unset: simdjson rounds capacities
  // up to 64 bytes; classify() enforces body_bytes_max itself.
  explicit Impl(std::size_t max) : body_bytes_max(max) {}
  simdjson::dom::parser parser;
  std::unique_ptr<std::uint8_t[]> padded;
  std::size_t body_bytes_max;
  bool ready = false;
};

BodyClassifier::BodyClassifier(std::size_t body_bytes_max, std::size_t depth_max) noexcept
    : impl_(new (std::nothrow) Impl(body_bytes_max)) {
  if (!impl_) return;
  impl_->padded.reset(new (std::nothrow) std::uint8_t[body_bytes_max + simdjson::SIMDJSON_PADDING]);
  impl_->ready =
      impl_->padded && impl_->parser.allocate(std::max<std::size_t>(body_bytes_max, 64), depth_max) == simdjson::SUCCESS;
}
BodyClassifier::~BodyClassifier() = default;
bool BodyClassifier::ready() const noexcept { return impl_ && impl_->ready; }

BodyKind BodyClassifier::classify(std::span<const std::uint8_t> body) noexcept {
  if (!utf8_valid(body)) return BodyKind::binary;
  if (!ready() || body.empty() || body.size() > impl_->body_bytes_max) return BodyKind::text;
  std::memcpy(impl_->padded.get(), body.data(), body.size());
  simdjson::dom::element root;
  if (impl_->parser.parse(impl_->padded.get(), body.size(), false).get(root) != simdjson::SUCCESS)
    return BodyKind::text;
  return BodyKind::json;
}

namespace {

constexpr std::size_t frame_gap = 10;  // longest unmasked server header
constexpr std::size_t envelope_bytes_max = 256 + 2 * name_bytes_max;

std::string_view as_chars(std::span<const std::uint8_t> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace

std::size_t message_frame_bytes_max(std::size_t body_bytes) noexcept {
  if (body_bytes > (SIZE_MAX - envelope_bytes_max - frame_gap) / 6) return SIZE_MAX;
  return frame_gap + envelope_bytes_max + escaped_bytes_max(body_bytes);
}

MessageFrame build_message_frame(std::span<std::uint8_t> out, const MessageSpec& m) noexcept {
  if (out.size() <= frame_gap) return {};
  Writer w{reinterpret_cast<char*>(out.data()) + frame_gap, out.size() - frame_gap};
  ws::Opcode opcode = ws::Opcode::text;
  if (m.envelope == Envelope::raw) {
    w.put(as_chars(m.body));
    if (m.kind == BodyKind::binary) opcode = ws::Opcode::binary;
  } else {
    if (m.user.empty()) {
      w.put(R"({"type":"message","channel":")");
      w.put(m.channel.substr(0, name_bytes_max));
    } else {
      w.put(R"({"type":"message","user":")");
      w.put(m.user.substr(0, name_bytes_max));
    }
    w.put(R"(","id":")");
    w.put(m.id.substr(0, name_bytes_max));
    w.put(R"(","data":)");
    switch (m.kind) {
      case BodyKind::json:
        w.put(as_chars(m.body));
        break;
      case BodyKind::text:
        w.put("\"");
        w.put_escaped(as_chars(m.body));
        w.put("\"");
        break;
      case BodyKind::binary: {
        w.put("\"");
        std::size_t b64_len = 0;
        if (!w.overflow && EVP_EncodedLength(&b64_len, m.body.size()) && b64_len <= w.cap - w.len) {
          // EVP_EncodeBlock writes a NUL after the text; it is overwritten next.
          w.len += EVP_EncodeBlock(reinterpret_cast<std::uint8_t*>(w.data + w.len), m.body.data(), m.body.size());
        } else {
          w.overflow = true;
        }
        w.put(R"(","encoding":"base64)");
        w.put("\"");
        break;
      }
    }
    w.put("}");
  }
  if (w.overflow) return {};

  std::array<std::uint8_t, ws::header_size_max> header{};
  const std::size_t hlen = ws::encode_header(header, opcode, true, w.len, nullptr);
  std::uint8_t* start = out.data() + frame_gap - hlen;
  std::memcpy(start, header.data(), hlen);
  return {std::span<const std::uint8_t>(start, hlen + w.len),
          std::span<const std::uint8_t>(out.data() + frame_gap, w.len), opcode};
}

// ---------------------------------------------------------------- query

bool ChannelList::contains(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < count_; ++i)
    if ((*this)[i] == name) return true;
  return false;
}

bool ChannelList::add(std::string_view name) noexcept {
  if (contains(name)) return true;
  if (count_ == channels_max || name.size() > buf_.size() - used_ || name.size() > name_bytes_max) return false;
  std::memcpy(buf_.data() + used_, name.data(), name.size());
  start_[count_] = static_cast<std::uint16_t>(used_);
  len_[count_] = static_cast<std::uint8_t>(name.size());
  used_ += name.size();
  ++count_;
  return true;
}

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

QueryResult query_fail(ErrorCode code, std::string_view message) noexcept { return {code, message}; }

// Decodes one `channels` value into `scratch` and adds its items to `out`.
QueryResult add_value(std::string_view value, std::span<char> scratch, ChannelList& out) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '%') {
      const int hi = i + 2 < value.size() ? hex_value(value[i + 1]) : -1;
      const int lo = i + 2 < value.size() ? hex_value(value[i + 2]) : -1;
      if (hi < 0 || lo < 0) return query_fail(ErrorCode::invalid_channel, "bad percent-encoding in channels");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (n == scratch.size()) return query_fail(ErrorCode::too_many_channels, "channels parameter too long");
    scratch[n++] = c;
  }
  std::string_view decoded(scratch.data(), n);
  while (true) {
    const std::size_t comma = decoded.find(',');
    const std::string_view item = decoded.substr(0, comma);
    const NameCheck check = check_name(item);
    if (!check.ok()) return query_fail(ErrorCode::invalid_channel, channel_error_text(check.error));
    if (!out.add(item)) return query_fail(ErrorCode::too_many_channels, "more than 64 channels");
    if (comma == std::string_view::npos) break;
    decoded.remove_prefix(comma + 1);
  }
  return {};
}

}  // namespace

QueryResult parse_channels_query(std::string_view query, ChannelList& out) noexcept {
  out.clear();
  std::array<char, query_value_bytes_max> scratch;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    static constexpr std::string_view key = "channels=";
    if (!param.starts_with(key)) continue;
    const QueryResult r = add_value(param.substr(key.size()), scratch, out);
    if (!r.ok()) return r;
  }
  return {};
}

std::string_view query_param(std::string_view query, std::string_view name, bool& found) noexcept {
  found = false;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (param.size() > name.size() && param.starts_with(name) && param[name.size()] == '=') {
      found = true;
      return param.substr(name.size() + 1);
    }
    if (param == name) {
      found = true;
      return {};
    }
  }
  return {};
}

}  // namespace rg::proto::pubsub
