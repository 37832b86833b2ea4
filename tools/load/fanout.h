// fanout mode, the pure parts: channel names and the subscribe path, the
// server's notices (subscribed / message) read back, the per-subscriber
// sequence accounting, the publish board every thread shares, and the
// HTTP/1.1 publish request and its answer.  Bytes in, verdicts out, so unit
// tests drive all of it without a socket.
//
// Each subscriber i listens to channel (i mod M).  The publisher sends K
// messages per channel, each body `{"seq":S,"ts_ns":T}` with S counting per
// channel from 0 and T the CLOCK_MONOTONIC send time (client and server share
// the host, hence the clock).  The server wraps it as
// {"type":"message","channel":C,"id":I,"data":{"seq":S,"ts_ns":T}}.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tools/load/histogram.h"

namespace rg::load::fanout {

// M x K publishes: the board keeps 9 bytes per publish, so this bounds it at
// 90 MB, sized at start-up.
inline constexpr std::uint64_t publishes_max = 10'000'000;
inline constexpr std::uint32_t no_channel = UINT32_MAX;

// ---------------------------------------------------------------- names

// prefix + decimal index ("fanout-7").  Returns the length, 0 if it does not
// fit in `out`.
std::size_t channel_name(std::span<char> out, std::string_view prefix, std::uint32_t index) noexcept;
// The index of `name` if it is prefix + a decimal index below `channels`
// (no leading zeros), else no_channel.
[[nodiscard]] std::uint32_t channel_index(std::string_view name, std::string_view prefix,
                                          std::uint32_t channels) noexcept;
// path + "?channels=" + name (or "&channels=" when path has a query).
// Returns the length, 0 if it does not fit.
std::size_t subscribe_path(std::span<char> out, std::string_view path, std::string_view prefix,
                           std::uint32_t index) noexcept;

// ---------------------------------------------------------------- notices

enum class NoticeKind : std::uint8_t {
  subscribed,  // {"type":"subscribed","channel":C}
  message,     // {"type":"message","channel":C,...,"data":{"seq":S,"ts_ns":T}}
  other,       // well formed, some other type (unsubscribed, error, ...)
  malformed,   // no type, no channel, or a message without our seq/ts_ns
};

struct Notice {
  NoticeKind kind = NoticeKind::malformed;
  std::string_view channel;  // points into the frame
  std::uint64_t seq = 0;
  std::uint64_t ts_ns = 0;
};

// Reads one server text frame.  A small scan for the keys of the server's
// fixed format, not a JSON parser: "type" and "channel" are looked up before
// "data", "seq" and "ts_ns" inside it, so an id or a channel can never be
// mistaken for them (ids and channels are [A-Za-z0-9._:-] anyway).
[[nodiscard]] Notice read_notice(std::string_view text) noexcept;

// {"seq":S,"ts_ns":T}.  Returns the length (at most publish_body_bytes_max).
inline constexpr std::size_t publish_body_bytes_max = 64;
std::size_t publish_body(std::span<char, publish_body_bytes_max> out, std::uint64_t seq, std::uint64_t ts_ns) noexcept;
// --size for fanout: grows the body of `len` bytes in `out` to `pad_to`
// bytes with a "pad" member ({...,"pad":"xxxx"}), so deliveries are big
// enough to fill socket buffers.  Returns the new length: `len` unchanged
// when pad_to leaves no room for the member (len + 10) or exceeds out.
std::size_t pad_body(std::span<char> out, std::size_t len, std::size_t pad_to) noexcept;
// The largest --size a fanout run may ask for (the server's default
// max_publish_size).
inline constexpr std::size_t fanout_size_bytes_max = 64 * 1024;

// ---------------------------------------------------------------- sequences

// How one message arrived at a subscriber, given the next sequence it
// expected on its channel.
enum class Arrival : std::uint8_t {
  in_order,   // seq == expected (or only failed publishes were skipped)
  ahead,      // seq > expected: published messages were skipped (a gap)
  late,       // seq < expected, not seen before: a gap filled out of order
  duplicate,  // seq < expected and seen already
  too_late,   // more than `window` behind: new or repeated cannot be told
};

// Per subscriber, 16 bytes: the next sequence expected and which of the
// `window` sequences below it arrived.  A message older than that counts as
// out of order and is not taken as a delivery (it cannot be told from a
// duplicate without a bitmap of every sequence).
struct SeqTracker {
  static constexpr std::uint64_t window = 64;
  std::uint64_t next = 0;
  std::uint64_t seen = 0;  // bit i: sequence next - 1 - i arrived
};

struct ArrivalResult {
  Arrival arrival = Arrival::in_order;
  std::uint64_t gap = 0;  // ahead: published sequences skipped
  // The message is new for this subscriber (in_order, ahead, late): it
  // counts as a delivery of its publish.
  [[nodiscard]] bool delivery() const noexcept {
    return arrival == Arrival::in_order || arrival == Arrival::ahead || arrival == Arrival::late;
  }
};

// Accounts for sequence `seq`.  `failed(s)` says publish s of the channel
// was refused: a sequence skipped because its publish failed is no gap.
// Skipped sequences are < seq, and the publisher sends seq only after the
// answer for every earlier one of the channel, so their state is final.
template <typename Failed>
ArrivalResult arrive(SeqTracker& t, std::uint64_t seq, Failed&& failed) noexcept {
  if (seq < t.next) {
    const std::uint64_t behind = t.next - 1 - seq;
    if (behind >= SeqTracker::window) return {Arrival::too_late, 0};
    const std::uint64_t bit = std::uint64_t{1} << behind;
    if (t.seen & bit) return {Arrival::duplicate, 0};
    t.seen |= bit;
    return {Arrival::late, 0};
  }
  std::uint64_t gap = 0;
  for (std::uint64_t s = t.next; s < seq; ++s)
    if (!failed(s)) ++gap;
  const std::uint64_t shift = seq + 1 - t.next;
  t.seen = (shift >= SeqTracker::window ? 0 : t.seen << shift) | 1;
  t.next = seq + 1;
  return {gap == 0 ? Arrival::in_order : Arrival::ahead, gap};
}

// What the subscribers of one thread saw; merged after the run.
struct Counts {
  std::uint64_t subscribed = 0;    // subscribed notices (first per connection)
  std::uint64_t ready = 0;         // subscribed when publishing began (checked + stalled)
  std::uint64_t received = 0;      // message notices at tracked subscribers, all of them
  std::uint64_t in_order = 0;
  std::uint64_t out_of_order = 0;  // ahead + late + too_late
  std::uint64_t gaps = 0;          // sequences skipped by `ahead` arrivals
  std::uint64_t duplicated = 0;
  std::uint64_t misrouted = 0;     // another channel's, or a sequence never published
  std::uint64_t malformed = 0;     // not a notice we can read (or fragmented, or binary)
  std::uint64_t untracked = 0;     // messages at subscribers that were not ready in time
  // --stall-percent: ready subscribers that stopped reading instead of being
  // checked, the messages they read anyway (before their receive was
  // cancelled; at the close phase's drain), and how each one ended.
  std::uint64_t stalled = 0;
  std::uint64_t stalled_received = 0;          // read after the stall began, before the receive stopped
  std::uint64_t stalled_drained = 0;           // read at the close phase
  std::uint64_t stalled_closed_by_server = 0;  // close frame, EOF or reset from the server, seen by the tool
  std::uint64_t stalled_closed_by_tool = 0;    // drained until quiet (or a protocol error), then closed by us
  Histogram latency_us;            // ts_ns -> received, per delivery

  void count(const ArrivalResult& r) noexcept;
  void merge(const Counts& o) noexcept;
};

// ---------------------------------------------------------------- stalls

// --stall-percent P: whether subscriber `id` (0-based, of `subscribers`, on
// channel id mod `channels`) is one of those that stop reading.  Every
// (100/P)-th in channel order (channel 0's subscribers, then channel 1's,
// ...), so each channel gets its share and keeps subscribers that are
// checked; floor(subscribers * P / 100) in all.
[[nodiscard]] bool stalls(std::uint64_t id, std::uint64_t subscribers, std::uint32_t channels,
                          std::uint32_t percent) noexcept;

enum class PublishState : std::uint8_t { pending, ok, failed };

// Shared by the publisher (states) and every engine thread (deliveries),
// sized once.  Relaxed atomics: each counter has many writers but only
// totals matter, read after the threads are joined; the one cross-thread
// read on the data path, state() in arrive(), is ordered by the server (a
// later sequence is published only after the earlier answer came back).
class Board {
 public:
  // False (with `error`) when the plan is too large or memory is short.
  bool init(std::uint32_t channels, std::uint64_t messages, std::string& error);

  [[nodiscard]] std::uint32_t channels() const noexcept { return channels_; }
  [[nodiscard]] std::uint64_t messages() const noexcept { return messages_; }
  [[nodiscard]] std::uint64_t index(std::uint32_t channel, std::uint64_t seq) const noexcept {
    return std::uint64_t{channel} * messages_ + seq;
  }

  // Tracked subscribers per channel, counted when publishing begins.
  void add_subscriber(std::uint32_t channel) noexcept { subscribers_[channel].fetch_add(1, std::memory_order_relaxed); }
  [[nodiscard]] std::uint32_t subscribers(std::uint32_t channel) const noexcept {
    return subscribers_[channel].load(std::memory_order_relaxed);
  }

  void set_state(std::uint64_t publish, PublishState s) noexcept {
    state_[publish].store(static_cast<std::uint8_t>(s), std::memory_order_release);
  }
  [[nodiscard]] PublishState state(std::uint64_t publish) const noexcept {
    return static_cast<PublishState>(state_[publish].load(std::memory_order_acquire));
  }

  // One subscriber got `publish` for the first time, `latency_us` after it
  // was sent: counts it and keeps the largest latency (the last subscriber).
  void delivered(std::uint64_t publish, std::uint64_t latency_us) noexcept;
  [[nodiscard]] std::uint32_t deliveries(std::uint64_t publish) const noexcept {
    return deliveries_[publish].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint32_t last_us(std::uint64_t publish) const noexcept {
    return last_us_[publish].load(std::memory_order_relaxed);
  }

 private:
  std::uint32_t channels_ = 0;
  std::uint64_t messages_ = 0;
  std::unique_ptr<std::atomic<std::uint32_t>[]> subscribers_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> deliveries_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> last_us_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> state_;
};

// The board read once at the end.
struct Tally {
  std::uint64_t publishes_ok = 0;
  std::uint64_t publishes_failed = 0;
  std::uint64_t publishes_unsent = 0;   // still pending: never sent (deadline, signal, API gone)
  std::uint64_t expected = 0;           // sum over ok publishes of the channel's tracked subscribers
  std::uint64_t delivered = 0;          // first deliveries of ok publishes
  std::uint64_t delivered_failed = 0;   // first deliveries of publishes that were answered with an error
  std::uint64_t lost = 0;               // expected - delivered, per publish, never below 0
  Histogram last_delivery_us;           // per ok publish with a delivery: its slowest subscriber
};
[[nodiscard]] Tally tally(const Board& board);

// ---------------------------------------------------------------- subscribers

// Where a stalled subscriber is: reading stopped when publishing began;
// read again at the close phase until the server ends it or it goes quiet;
// ended (how is counted once, in Counts).
enum class Stall : std::uint8_t { none, paused, draining, ended };

// One per engine slot, 24 bytes.
struct Subscriber {
  SeqTracker tracker;
  std::uint32_t channel = 0;
  bool subscribed = false;  // the server's subscribed notice arrived
  bool tracked = false;     // subscribed when publishing began, not stalled: its messages are checked
  Stall stall = Stall::none;
};
static_assert(sizeof(Subscriber) == 24, "docs/capacity.md counts 24 bytes per subscriber");

// Publishing begins for a subscriber that is open and subscribed: it is
// checked (counted on its channel's board entry, so publishes expect it),
// or, with `stall`, stalled (counted in Counts::stalled, never on the
// board, so no publish expects it).  Both count as ready.
void begin_publishing(Subscriber& sub, bool stall, Board& board, Counts& counts) noexcept;

struct Taken {
  bool checked = false;    // counted in Counts::received
  bool error = false;      // misrouted, or not in order
  bool delivered = false;  // a first delivery of its publish, on the board
};

// A message notice at `sub` for channel index `channel` (no_channel if not
// ours): checked against the channel's sequence, timed, and put on the
// board when `sub` is checked; only counted when it is stalled or was not
// ready in time.
Taken take_message(Subscriber& sub, std::uint32_t channel, const Notice& notice, std::uint64_t now_ns, Board& board,
                   Counts& counts) noexcept;

// A stalled subscriber ended (once): `by_server` when the server's close
// frame, EOF or reset ended it, else the tool closed it.  No-op otherwise.
void end_stall(Subscriber& sub, bool by_server, Counts& counts) noexcept;

// ---------------------------------------------------------------- publish HTTP

// POST <prefix>/publish/<channel> HTTP/1.1, with Host, Content-Type,
// Content-Length and (when `token` is not empty) Authorization: Bearer.
// Returns the length, 0 if it does not fit.
std::size_t build_publish_request(std::span<char> out, std::string_view host_header, std::string_view prefix,
                                  std::string_view channel, std::string_view token, std::string_view body) noexcept;

// Headers beyond this, or bodies beyond answer_body_bytes_max, end the
// connection: the server's answers are ~100 bytes.
inline constexpr std::size_t answer_head_bytes_max = 8192;
inline constexpr std::size_t answer_body_bytes_max = 65536;

enum class AnswerStatus : std::uint8_t { need_more, complete, malformed };

struct Answer {
  AnswerStatus status = AnswerStatus::need_more;
  std::uint16_t code = 0;
  bool close = false;             // Connection: close, or HTTP/1.0
  std::size_t header_bytes = 0;   // up to and including the blank line
  std::size_t body_bytes = 0;     // Content-Length (required: no chunked answers)
  [[nodiscard]] std::size_t total_bytes() const noexcept { return header_bytes + body_bytes; }
};

// Parses an answer at the start of `bytes` (all received so far).  complete
// means the headers are in; the body is complete once total_bytes() are.
[[nodiscard]] Answer parse_answer(std::string_view bytes) noexcept;

// "recipients":N in a 200 answer's body; false if absent.
[[nodiscard]] bool read_recipients(std::string_view body, std::uint64_t& recipients) noexcept;
// "nodes":N, what a publish through ringgate's backplane answers instead.
[[nodiscard]] bool read_nodes(std::string_view body, std::uint64_t& nodes) noexcept;

}  // namespace rg::load::fanout
