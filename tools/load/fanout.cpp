#include "tools/load/fanout.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>

#include "proto/http_upgrade.h"

namespace rg::load::fanout {

namespace {

using proto::http::iequals;
using proto::http::trim;

// Appends `parts` to `out`; the total length, or 0 when they do not fit.
template <std::size_t N>
std::size_t join(std::span<char> out, const std::string_view (&parts)[N]) noexcept {
  std::size_t len = 0;
  for (const std::string_view part : parts) {
    if (len + part.size() > out.size()) return 0;
    std::memcpy(out.data() + len, part.data(), part.size());
    len += part.size();
  }
  return len;
}

// The value of a string member `"key":"..."` in `text`, or npos-empty.
bool string_member(std::string_view text, std::string_view quoted_key, std::string_view& value) noexcept {
  std::size_t at = text.find(quoted_key);
  if (at == std::string_view::npos) return false;
  at += quoted_key.size();
  while (at < text.size() && (text[at] == ' ' || text[at] == ':')) ++at;
  if (at >= text.size() || text[at] != '"') return false;
  const std::size_t end = text.find('"', at + 1);
  if (end == std::string_view::npos) return false;
  value = text.substr(at + 1, end - at - 1);
  return true;
}

bool number_member(std::string_view text, std::string_view quoted_key, std::uint64_t& value) noexcept {
  std::size_t at = text.find(quoted_key);
  if (at == std::string_view::npos) return false;
  at += quoted_key.size();
  while (at < text.size() && (text[at] == ' ' || text[at] == ':')) ++at;
  const auto r = std::from_chars(text.data() + at, text.data() + text.size(), value);
  return r.ec == std::errc{} && r.ptr != text.data() + at;
}

}  // namespace

// ---------------------------------------------------------------- names

std::size_t channel_name(std::span<char> out, std::string_view prefix, std::uint32_t index) noexcept {
  char digits[10];
  const auto r = std::to_chars(digits, digits + sizeof digits, index);
  const std::string_view parts[] = {prefix, {digits, static_cast<std::size_t>(r.ptr - digits)}};
  return join(out, parts);
}

std::uint32_t channel_index(std::string_view name, std::string_view prefix, std::uint32_t channels) noexcept {
  if (!name.starts_with(prefix)) return no_channel;
  name.remove_prefix(prefix.size());
  if (name.empty() || (name.size() > 1 && name[0] == '0')) return no_channel;
  std::uint32_t index = 0;
  const auto r = std::from_chars(name.data(), name.data() + name.size(), index);
  if (r.ec != std::errc{} || r.ptr != name.data() + name.size() || index >= channels) return no_channel;
  return index;
}

std::size_t subscribe_path(std::span<char> out, std::string_view path, std::string_view prefix,
                           std::uint32_t index) noexcept {
  char name[16 + 128];
  const std::size_t name_len = channel_name(name, prefix, index);
  if (name_len == 0) return 0;
  const std::string_view parts[] = {path, path.find('?') == std::string_view::npos ? "?channels=" : "&channels=",
                                    {name, name_len}};
  return join(out, parts);
}

// ---------------------------------------------------------------- notices

Notice read_notice(std::string_view text) noexcept {
  Notice n;
  const std::size_t data_at = text.find("\"data\"");
  const std::string_view head = text.substr(0, data_at);
  std::string_view type;
  if (!text.starts_with("{") || !string_member(head, "\"type\"", type) ||
      !string_member(head, "\"channel\"", n.channel))
    return n;
  if (type == "subscribed") {
    n.kind = NoticeKind::subscribed;
    return n;
  }
  if (type != "message") {
    n.kind = NoticeKind::other;
    return n;
  }
  if (data_at == std::string_view::npos) return n;
  const std::string_view data = text.substr(data_at);
  if (number_member(data, "\"seq\"", n.seq) && number_member(data, "\"ts_ns\"", n.ts_ns)) n.kind = NoticeKind::message;
  return n;
}

std::size_t publish_body(std::span<char, publish_body_bytes_max> out, std::uint64_t seq, std::uint64_t ts_ns) noexcept {
  char seq_text[20], ts_text[20];
  const auto a = std::to_chars(seq_text, seq_text + sizeof seq_text, seq);
  const auto b = std::to_chars(ts_text, ts_text + sizeof ts_text, ts_ns);
  const std::string_view parts[] = {"{\"seq\":", {seq_text, static_cast<std::size_t>(a.ptr - seq_text)},
                                    ",\"ts_ns\":", {ts_text, static_cast<std::size_t>(b.ptr - ts_text)}, "}"};
  static_assert(7 + 20 + 9 + 20 + 1 <= publish_body_bytes_max, "two u64s always fit");
  return join(out, parts);
}

std::size_t pad_body(std::span<char> out, std::size_t len, std::size_t pad_to) noexcept {
  static constexpr std::string_view member = ",\"pad\":\"";  // then the padding, then "}
  if (len < 2 || out[len - 1] != '}' || pad_to < len + member.size() + 2 || pad_to > out.size()) return len;
  char* at = out.data() + len - 1;  // overwrite the closing brace
  std::memcpy(at, member.data(), member.size());
  at += member.size();
  const std::size_t fill = pad_to - (len - 1) - member.size() - 2;
  std::memset(at, 'x', fill);
  at += fill;
  *at++ = '"';
  *at++ = '}';
  return pad_to;
}

// ---------------------------------------------------------------- counts

void Counts::count(const ArrivalResult& r) noexcept {
  ++received;
  switch (r.arrival) {
    case Arrival::in_order: ++in_order; break;
    case Arrival::ahead:
      ++out_of_order;
      gaps += r.gap;
      break;
    case Arrival::late:
    case Arrival::too_late: ++out_of_order; break;
    case Arrival::duplicate: ++duplicated; break;
  }
}

void Counts::merge(const Counts& o) noexcept {
  subscribed += o.subscribed;
  ready += o.ready;
  received += o.received;
  in_order += o.in_order;
  out_of_order += o.out_of_order;
  gaps += o.gaps;
  duplicated += o.duplicated;
  misrouted += o.misrouted;
  malformed += o.malformed;
  untracked += o.untracked;
  stalled += o.stalled;
  stalled_received += o.stalled_received;
  stalled_drained += o.stalled_drained;
  stalled_closed_by_server += o.stalled_closed_by_server;
  stalled_closed_by_tool += o.stalled_closed_by_tool;
  latency_us.merge(o.latency_us);
}

// ---------------------------------------------------------------- stalls

bool stalls(std::uint64_t id, std::uint64_t subscribers, std::uint32_t channels, std::uint32_t percent) noexcept {
  if (percent == 0 || channels == 0 || id >= subscribers) return false;
  // Position in channel order: channel c holds subscribers / channels
  // subscribers, one more for the first subscribers % channels channels.
  const std::uint64_t c = id % channels;
  const std::uint64_t pos = c * (subscribers / channels) + std::min<std::uint64_t>(c, subscribers % channels) +
                            id / channels;
  const std::uint64_t p = std::min<std::uint32_t>(percent, 100);
  return (pos + 1) * p / 100 > pos * p / 100;
}

// ---------------------------------------------------------------- subscribers

void begin_publishing(Subscriber& sub, bool stall, Board& board, Counts& counts) noexcept {
  if (sub.tracked || sub.stall != Stall::none) return;
  ++counts.ready;
  if (stall) {
    sub.stall = Stall::paused;
    ++counts.stalled;
    return;
  }
  sub.tracked = true;
  board.add_subscriber(sub.channel);
}

Taken take_message(Subscriber& sub, std::uint32_t channel, const Notice& n, std::uint64_t now_ns, Board& board,
                   Counts& counts) noexcept {
  if (sub.stall != Stall::none) {
    ++(sub.stall == Stall::paused ? counts.stalled_received : counts.stalled_drained);
    return {};
  }
  if (!sub.tracked) {
    ++counts.untracked;  // subscribed too late to have been counted on
    return {};
  }
  if (channel != sub.channel || n.seq >= board.messages()) {
    ++counts.misrouted;
    return {.error = true};
  }
  const std::uint64_t first = board.index(channel, 0);
  const ArrivalResult r =
      arrive(sub.tracker, n.seq, [&](std::uint64_t seq) { return board.state(first + seq) == PublishState::failed; });
  counts.count(r);
  Taken t{.checked = true, .error = r.arrival != Arrival::in_order};
  if (!r.delivery()) return t;
  const std::uint64_t latency_us = now_ns > n.ts_ns ? (now_ns - n.ts_ns) / 1000 : 0;
  counts.latency_us.record(latency_us);
  board.delivered(first + n.seq, latency_us);
  t.delivered = true;
  return t;
}

void end_stall(Subscriber& sub, bool by_server, Counts& counts) noexcept {
  if (sub.stall != Stall::paused && sub.stall != Stall::draining) return;
  sub.stall = Stall::ended;
  ++(by_server ? counts.stalled_closed_by_server : counts.stalled_closed_by_tool);
}

// ---------------------------------------------------------------- board

bool Board::init(std::uint32_t channels, std::uint64_t messages, std::string& error) {
  if (channels == 0 || messages == 0 || messages > publishes_max / channels) {
    error = "fanout plan of " + std::to_string(channels) + " channels x " + std::to_string(messages) +
            " messages is empty or above " + std::to_string(publishes_max) + " publishes";
    return false;
  }
  const std::uint64_t publishes = std::uint64_t{channels} * messages;
  channels_ = channels;
  messages_ = messages;
  // new[] of atomics value-initialises them to 0 (C++20); nothrow: a plan
  // too large for this machine is an error message, not an exception.
  subscribers_.reset(new (std::nothrow) std::atomic<std::uint32_t>[channels]());
  deliveries_.reset(new (std::nothrow) std::atomic<std::uint32_t>[publishes]());
  last_us_.reset(new (std::nothrow) std::atomic<std::uint32_t>[publishes]());
  state_.reset(new (std::nothrow) std::atomic<std::uint8_t>[publishes]());
  if (!subscribers_ || !deliveries_ || !last_us_ || !state_) {
    error = "allocating the fanout board (" + std::to_string(publishes * 9 >> 20) + " MiB for " +
            std::to_string(publishes) + " publishes)";
    return false;
  }
  return true;
}

void Board::delivered(std::uint64_t publish, std::uint64_t latency_us) noexcept {
  deliveries_[publish].fetch_add(1, std::memory_order_relaxed);
  const auto us = static_cast<std::uint32_t>(std::min<std::uint64_t>(latency_us, UINT32_MAX));
  std::uint32_t seen = last_us_[publish].load(std::memory_order_relaxed);
  // Bounded: each failed exchange means another thread raised the value.
  while (us > seen && !last_us_[publish].compare_exchange_weak(seen, us, std::memory_order_relaxed)) {
  }
}

Tally tally(const Board& b) {
  Tally t;
  for (std::uint32_t c = 0; c < b.channels(); ++c) {
    const std::uint64_t subscribers = b.subscribers(c);
    for (std::uint64_t seq = 0; seq < b.messages(); ++seq) {
      const std::uint64_t p = b.index(c, seq);
      const std::uint64_t got = b.deliveries(p);
      switch (b.state(p)) {
        case PublishState::pending: ++t.publishes_unsent; break;
        case PublishState::failed:
          ++t.publishes_failed;
          t.delivered_failed += got;
          break;
        case PublishState::ok:
          ++t.publishes_ok;
          t.expected += subscribers;
          t.delivered += got;
          t.lost += got < subscribers ? subscribers - got : 0;
          if (got > 0) t.last_delivery_us.record(b.last_us(p));
          break;
      }
    }
  }
  return t;
}

// ---------------------------------------------------------------- publish HTTP

std::size_t build_publish_request(std::span<char> out, std::string_view host_header, std::string_view prefix,
                                  std::string_view channel, std::string_view token, std::string_view body) noexcept {
  char length[20];
  const auto r = std::to_chars(length, length + sizeof length, body.size());
  const bool auth = !token.empty();
  const std::string_view parts[] = {
      "POST ", prefix, "/publish/", channel, " HTTP/1.1\r\nHost: ", host_header,
      "\r\nContent-Type: application/json\r\nContent-Length: ", {length, static_cast<std::size_t>(r.ptr - length)},
      auth ? "\r\nAuthorization: Bearer " : "", auth ? token : "", "\r\n\r\n", body,
  };
  return join(out, parts);
}

Answer parse_answer(std::string_view text) noexcept {
  Answer a;
  const std::size_t end = text.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (text.size() >= answer_head_bytes_max || (text.size() >= 5 && !text.starts_with("HTTP/")))
      a.status = AnswerStatus::malformed;
    return a;
  }
  a.status = AnswerStatus::malformed;
  if (end + 4 > answer_head_bytes_max) return a;
  std::string_view head = text.substr(0, end + 2);
  std::size_t line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') return a;
  for (std::size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') return a;
    a.code = static_cast<std::uint16_t>(a.code * 10 + (status_line[i] - '0'));
  }
  a.close = status_line[7] == '0';
  bool have_length = false;
  head.remove_prefix(line_end + 2);
  while (!head.empty()) {
    line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    head.remove_prefix(line_end + 2);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = trim(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      const auto r = std::from_chars(value.data(), value.data() + value.size(), a.body_bytes);
      if (r.ec != std::errc{} || r.ptr != value.data() + value.size() || a.body_bytes > answer_body_bytes_max)
        return a;
      have_length = true;
    } else if (iequals(name, "transfer-encoding")) {
      return a;  // chunked: not what the contract answers
    } else if (iequals(name, "connection")) {
      a.close = iequals(value, "close");
    }
  }
  if (!have_length) return a;
  a.header_bytes = end + 4;
  a.status = AnswerStatus::complete;
  return a;
}

bool read_recipients(std::string_view body, std::uint64_t& recipients) noexcept {
  return number_member(body, "\"recipients\"", recipients);
}

bool read_nodes(std::string_view body, std::uint64_t& nodes) noexcept { return number_member(body, "\"nodes\"", nodes); }

}  // namespace rg::load::fanout
