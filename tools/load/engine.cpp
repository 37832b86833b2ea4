#include "tools/load/engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "proto/http_upgrade.h"
#include "proto/ws_frame.h"
#include "base/clock.h"
#include "base/deadline_lists.h"
#include "proto/ws_wire.h"
#include "ring/ring.h"
#include "tools/load/handshake.h"
#include "tools/load/payload.h"

namespace rg::load {

namespace ws = rg::proto::ws;

std::uint64_t monotonic_ns() noexcept { return base::monotonic_ns(); }

std::string_view outcome_name(Outcome outcome) noexcept {
  switch (outcome) {
    case Outcome::upgraded: return "upgraded";
    case Outcome::http_503_retry_after: return "http_503_retry_after";
    case Outcome::http_503_no_retry_after: return "http_503_no_retry_after";
    case Outcome::http_429_retry_after: return "http_429_retry_after";
    case Outcome::http_429_no_retry_after: return "http_429_no_retry_after";
    case Outcome::close_1013: return "close_1013";
    case Outcome::reset: return "reset";
    case Outcome::refused: return "refused";
    case Outcome::timed_out: return "timed_out";
    case Outcome::tls_failed: return "tls_failed";
    case Outcome::other: return "other";
  }
  return "?";
}

Outcome http_outcome(std::uint16_t status, bool retry_after) noexcept {
  switch (status) {
    case 503: return retry_after ? Outcome::http_503_retry_after : Outcome::http_503_no_retry_after;
    case 429: return retry_after ? Outcome::http_429_retry_after : Outcome::http_429_no_retry_after;
    default: return Outcome::other;
  }
}

std::string_view oddity_name(Oddity oddity) noexcept {
  switch (oddity) {
    case Oddity::malformed_response: return "malformed_response";
    case Oddity::bad_accept: return "bad_accept";
    case Oddity::no_upgrade_header: return "no_upgrade_header";
    case Oddity::eof_before_response: return "eof_before_response";
    case Oddity::aborted: return "aborted";
    case Oddity::no_sqe: return "no_sqe";
  }
  return "?";
}

void OtherDetail::merge(const OtherDetail& o) noexcept {
  for (std::size_t i = 0; i < by_errno.size(); ++i) by_errno[i] += o.by_errno[i];
  for (std::size_t i = 0; i < by_status.size(); ++i) by_status[i] += o.by_status[i];
  for (std::size_t i = 0; i < by_oddity.size(); ++i) by_oddity[i] += o.by_oddity[i];
}

void StepStats::merge(const StepStats& o) noexcept {
  attempted += o.attempted;
  for (std::size_t i = 0; i < outcome_count; ++i) outcomes[i] += o.outcomes[i];
  disconnects_after_success += o.disconnects_after_success;
  closed_clean += o.closed_clean;
  closed_eof += o.closed_eof;
  close_timeouts += o.close_timeouts;
  close_errors += o.close_errors;
  protocol_errors += o.protocol_errors;
  pings += o.pings;
  unexpected_messages += o.unexpected_messages;
  echo_msgs += o.echo_msgs;
  echo_bytes += o.echo_bytes;
  echo_total += o.echo_total;
  mismatches += o.mismatches;
  lost += o.lost;
  duplicates += o.duplicates;
  unanswered += o.unanswered;
  held_checked += o.held_checked;
  held_echoed += o.held_echoed;
  held_echo_failed += o.held_echo_failed;
  out_of_order += o.out_of_order;
  fanout.merge(o.fanout);
  tls.merge(o.tls);
  handshake_us.merge(o.handshake_us);
  refused_us.merge(o.refused_us);
  rtt_us.merge(o.rtt_us);
  other.merge(o.other);
  if (o.first_failure.attempt < first_failure.attempt) first_failure = o.first_failure;
}

void SourceCounts::merge(const SourceCounts& o) noexcept {
  attempted += o.attempted;
  for (std::size_t i = 0; i < outcome_count; ++i) outcomes[i] += o.outcomes[i];
}

namespace {

constexpr std::uint32_t nil = UINT32_MAX;
// CQEs copied out per reap; a turn reaps at most reap_rounds_max batches so
// that timers and pacing still run under a flood of completions.
constexpr std::size_t reap_batch = 1024;
constexpr int reap_rounds_max = 8;
// Longest sleep in submit_and_wait: the latency of noticing a new command and
// the resolution of every timeout.
constexpr std::uint64_t idle_wait_us = 10'000;
// Shortest sleep while pacing connection attempts: waking more often than
// this costs CPU and buys no accuracy (the bucket carries the fraction).
constexpr std::uint64_t pacing_wait_us_min = 500;
// The token bucket holds at most this much time's worth of attempts, so a
// slow turn does not turn into a burst.
constexpr double bucket_depth_s = 0.05;
// SQEs per connection attempt (socket, 2 x setsockopt, bind, connect).
constexpr std::uint32_t chain_sqes = 5;
// Cap attempts per turn well inside the SQ (4096 entries).
constexpr std::uint32_t attempts_per_turn_max = 512;
constexpr std::uint16_t buffer_group = 0;
constexpr std::uint32_t recv_buffer_bytes = 4096;
constexpr std::size_t control_frame_bytes_max = 2 + 4 + ws::control_payload_max;  // masked, payload <= 125
// fanout: the target's path plus "?channels=" and a channel name.
constexpr std::size_t subscribe_path_bytes_max = path_bytes_max + 16 + 128;
// fanout --stall-percent: a stalled subscriber read again at the close phase
// counts as drained after this long without data (then we close it), or
// after --close-timeout of data at the latest.
constexpr std::uint64_t stall_drain_quiet_ms = 250;

enum Op : std::uint8_t { op_socket = 1, op_sockopt, op_bind, op_connect, op_recv, op_send, op_cancel, op_close };

enum class State : std::uint8_t {
  free = 0,
  connecting,    // socket/setsockopt/bind/connect chain in flight
  handshaking,   // request sent, waiting for the 101
  open,          // upgraded
  closing,       // close frame sent (ours or our reply): waiting for the server's close and EOF
  tearing_down,  // cancels in flight: waiting for every op to finish
  releasing,     // close_direct in flight
};

enum Flag : std::uint16_t {
  f_recv_armed = 1 << 0,
  f_send_in_flight = 1 << 1,
  f_resolved = 1 << 2,      // the attempt's outcome is counted
  f_upgraded = 1 << 3,
  f_got_close = 1 << 4,     // the server's close frame arrived
  f_sent_close = 1 << 5,    // our close frame is staged or sent
  f_we_closed = 1 << 6,     // we started the close (not the server)
  f_dirty = 1 << 7,         // on the flush list
  f_rearm_queued = 1 << 8,  // on the re-arm list (multishot recv ended)
  f_in_message = 1 << 9,    // inside a fragmented data message
  f_message_bad = 1 << 10,  // a fragment of the current message mismatched
  f_counted_open = 1 << 11, // counted in live.open
  f_lost_counted = 1 << 12, // counted in disconnects_after_success
  f_message_dup = 1 << 13,  // the current fragmented message repeats an answered one
  f_draining = 1 << 14,     // close phase: waiting for echoes in flight before our close
  f_verifying = 1 << 15,    // --verify-echo: our one message awaits its echo
};

enum class TimerList : std::uint8_t { none, handshake, closing, verify, drain };

// Per-connection record.  Buffers live in arenas indexed by slot.
struct Conn {
  std::uint64_t started_ns;   // connect chain submitted
  std::uint64_t next_seq;     // echo: next sequence number to send
  std::uint64_t expect_seq;   // echo: sequence expected in the next echo
  std::uint64_t message_seq;  // echo: sequence the current fragmented message answers
  std::uint32_t generation;   // bumped on release; travels in user_data
  std::uint32_t id;           // global attempt number: payload connection id, source choice
  std::uint32_t timer_prev;
  std::uint32_t timer_next;
  std::uint32_t deadline_ms;  // thread-relative, compared wrap-safe
  std::uint32_t carry_len;    // bytes of a partial response/frame kept in the carry arena
  std::uint32_t staged_len;   // bytes staged in the filling half
  std::uint32_t flight_len;   // bytes of the half being sent
  std::uint32_t flight_sent;
  std::uint32_t inflight;     // echo messages sent and not yet echoed
  std::uint32_t message_offset;  // bytes of the current fragmented message seen
  std::array<std::uint8_t, 4> mask;
  std::uint16_t flags;
  std::uint16_t close_code;   // from the server's close frame
  State state;
  TimerList timer_list;
  std::uint8_t ops;           // operations in flight (chain and multishot recv count once)
  std::uint8_t fill_half;     // which staging half takes new frames
  std::uint8_t step;
  std::uint8_t message_opcode;
};

// Anonymous memory reserved at start-up.  Not populated: arenas are sized for
// the worst case (a split response, a full echo window) and most pages are
// never touched.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    if (base_) munmap(base_, bytes_);
  }
  bool init(std::size_t bytes) {
    bytes_ = std::max<std::size_t>(bytes, 4096);
    void* m = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    base_ = static_cast<std::uint8_t*>(m);
    return true;
  }
  [[nodiscard]] std::uint8_t* at(std::size_t offset) const noexcept { return base_ + offset; }

 private:
  std::uint8_t* base_ = nullptr;
  std::size_t bytes_ = 0;
};

[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::uint32_t next_pow2(std::uint32_t n) {
  std::uint32_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Sequence numbers sent to the echo server: text payloads carry 48 bits.
constexpr std::uint64_t text_sequence_mask = (std::uint64_t{1} << 48) - 1;

}  // namespace

class Engine final : private tls::Sink {
 public:
  explicit Engine(const EngineSetup& setup) : s_(setup), o_(*setup.options), live_(*setup.live) {}

  bool start(std::string& error);
  void run();
  [[nodiscard]] const std::vector<StepStats>& steps() const { return steps_; }
  [[nodiscard]] const std::vector<SourceCounts>& by_source() const { return by_source_; }

 private:
  // ------------------------------------------------------------ plumbing
  ring::Tag tag(Op op, std::uint32_t slot) const { return {op, conns_[slot].generation, slot}; }
  std::uint32_t rel_ms() const { return static_cast<std::uint32_t>((now_ns_ - s_.epoch_ns) / 1'000'000); }
  StepStats& stats_of(const Conn& k) { return steps_[k.step]; }
  SourceCounts& source_of_conn(const Conn& k) {
    return by_source_[source_of(k.id, static_cast<std::uint32_t>(by_source_.size()))];
  }
  std::uint8_t* carry(std::uint32_t slot) const { return carry_.at(std::size_t{slot} * carry_bytes_); }
  std::uint8_t* half(std::uint32_t slot, std::uint8_t which) const {
    return out_.at((std::size_t{slot} * 2 + which) * half_bytes_);
  }
  std::uint64_t* sent_at(std::uint32_t slot) const {
    return reinterpret_cast<std::uint64_t*>(sent_.at(std::size_t{slot} * window_ * sizeof(std::uint64_t)));
  }
  handshake::Key key_of(const Conn& k) const { return handshake::make_key(mix64(key_seed_ ^ k.id), mix64(~key_seed_ ^ k.id)); }

  void dispatch(const ring::Completion& c);
  void poll_command();
  void enter_phase(Phase phase, std::uint32_t step);
  void open_more();
  bool start_attempt();
  void run_timers();
  void flush_dirty();
  void publish_live();

  // ------------------------------------------------------------ events
  void on_chain_end(std::uint32_t slot, const ring::Completion& c);
  void on_recv(std::uint32_t slot, const ring::Completion& c);
  void on_send(std::uint32_t slot, const ring::Completion& c);
  void count_socket_error(std::uint32_t slot, int err);
  void on_close(std::uint32_t slot, const ring::Completion& c);

  // ------------------------------------------------------------ connection
  void handshake_bytes(std::uint32_t slot, std::span<const std::uint8_t> data);
  void ws_bytes(std::uint32_t slot, std::span<const std::uint8_t> data);
  bool frame(std::uint32_t slot, const ws::FrameHeader& h, std::span<const std::uint8_t> payload);
  void data_frame(std::uint32_t slot, const ws::FrameHeader& h, std::span<const std::uint8_t> payload);
  enum class EchoSeq : std::uint8_t { ahead, behind, unknown };
  [[nodiscard]] std::uint64_t carried_seq(std::uint64_t seq) const noexcept;
  [[nodiscard]] EchoSeq locate_echo(const Conn& k, std::uint64_t carried, std::uint64_t& seq) const noexcept;
  void duplicate_echo(std::uint32_t slot);
  void echo_received(std::uint32_t slot, std::uint64_t seq, bool ok, std::size_t bytes);
  void count_unanswered(std::uint32_t slot);
  void verify_done(std::uint32_t slot, bool echoed);
  void fanout_frame(std::uint32_t slot, const ws::FrameHeader& h, std::span<const std::uint8_t> payload);
  void fanout_subscribed(std::uint32_t slot, std::uint32_t channel);
  void fanout_message(std::uint32_t slot, const fanout::Notice& n, std::uint32_t channel);
  void fanout_track();
  void drain_stalled(std::uint32_t slot);
  [[nodiscard]] fanout::Stall stall_of(std::uint32_t slot) const {
    return o_.mode == Mode::fanout ? subs_[slot].stall : fanout::Stall::none;
  }
  // Stalled and not yet ended: paused (not reading) or draining.
  [[nodiscard]] bool stalled(std::uint32_t slot) const {
    const fanout::Stall s = stall_of(slot);
    return s == fanout::Stall::paused || s == fanout::Stall::draining;
  }
  [[nodiscard]] std::string_view request_path(std::uint32_t slot);
  void upgraded(std::uint32_t slot);
  void resolve(std::uint32_t slot, Outcome outcome);
  void resolve_errno(std::uint32_t slot, int err);
  void resolve_oddity(std::uint32_t slot, Oddity oddity);
  void lost_after_upgrade(std::uint32_t slot);
  void protocol_error(std::uint32_t slot);
  std::uint8_t* stage(std::uint32_t slot, std::size_t bytes);
  bool stage_frame(std::uint32_t slot, ws::Opcode opcode, std::span<const std::uint8_t> payload);
  bool stage_echo_message(std::uint32_t slot);
  void start_close(std::uint32_t slot, std::uint16_t code);
  void mark_dirty(std::uint32_t slot);
  void flush(std::uint32_t slot);
  void flush_tls(std::uint32_t slot);
  void arm_recv(std::uint32_t slot);
  void set_open(std::uint32_t slot, bool open);
  void teardown(std::uint32_t slot);
  void maybe_release(std::uint32_t slot);
  void release(std::uint32_t slot);

  // ------------------------------------------------------------ wss://
  // tls::Sink: the thread's TLS client reports here.
  void tls_handshake_done(std::uint32_t slot, bool tls13, bool resumed, std::uint64_t took_ns) override;
  void tls_failed(std::uint32_t slot, bool in_handshake, tls::Failure failure, std::uint8_t alert,
                  const std::string& detail) override;
  bool tls_plain(std::uint32_t slot, std::span<const std::uint8_t> bytes) override;
  void tls_peer_closed(std::uint32_t slot) override;
  // An attempt whose TLS handshake began ends before it finished (timeout,
  // EOF, reset, abort): counted once, by `why`.
  void tls_unfinished(std::uint32_t slot, tls::Failure why, const char* detail);
  void count_tls_failure(std::uint32_t slot, tls::Failure why, std::uint8_t alert, const std::string& detail);

  // ------------------------------------------------------------ timers
  void timer_add(std::uint32_t slot, TimerList list, std::uint64_t timeout_ms);
  void timer_remove(std::uint32_t slot);

  EngineSetup s_;
  const Options& o_;
  LiveCounters& live_;

  ring::Ring ring_;
  ring::BufferRing buffers_;
  std::vector<Conn> conns_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint32_t> rearm_;
  // wss:// only: the SSLs, the BIO and the record buffers of this thread.
  std::unique_ptr<tls::Client> tls_;
  Arena out_;
  Arena carry_;
  Arena sent_;
  std::size_t half_bytes_ = 0;
  // Echo messages in flight per connection at most: --inflight in echo mode,
  // one for flood --verify-echo.  Sizes the send-time arena.
  std::uint32_t window_ = 1;
  std::size_t carry_bytes_ = 0;

  // fanout: one per slot, sized at start-up (empty in other modes).
  std::vector<fanout::Subscriber> subs_;
  std::uint32_t drain_started_ms_ = 0;  // the close phase began: stalled subscribers drain from here
  std::array<char, subscribe_path_bytes_max> path_{};

  // Addresses the chain's SQEs point at: they must outlive the SQEs, so they
  // live here, sized at start-up, never reallocated.
  std::vector<sockaddr_storage> source_addrs_;
  socklen_t source_len_ = 0;
  sockaddr_storage target_addr_{};

  std::vector<StepStats> steps_;
  std::vector<SourceCounts> by_source_;  // one row per entry of source_addrs_
  std::uint64_t key_seed_ = 0;
  std::uint64_t now_ns_ = 0;
  std::uint64_t command_ = 0;
  Phase phase_ = Phase::idle;
  std::uint32_t step_ = 0;
  std::uint64_t to_open_ = 0;      // attempts left in this step
  std::uint64_t attempts_ = 0;     // this thread's attempts so far (all steps)
  double rate_per_s_ = 0;          // this thread's share of the step's rate; 0 = unpaced
  double tokens_ = 0;
  std::uint64_t refill_ns_ = 0;

  // Plain copies of the live counters (single writer), published per turn.
  std::uint64_t attempted_ = 0, upgraded_ = 0, failed_ = 0, open_ = 0, disconnects_ = 0, echo_msgs_ = 0, errors_ = 0;
  std::uint64_t verifying_ = 0;
  std::uint64_t subscribed_ = 0, awaiting_ = 0, ready_ = 0, stalled_ = 0, fanout_received_ = 0, fanout_delivered_ = 0;
  std::uint64_t tls_handshakes_ = 0, tls_resumed_ = 0;

  base::DeadlineLists<Conn, TimerList, 5> timers_;
};

bool Engine::start(std::string& error) {
  now_ns_ = monotonic_ns();
  key_seed_ = mix64(s_.seed ^ (std::uint64_t{s_.index} << 48));
  steps_.resize(o_.mode == Mode::ramp ? o_.rates_per_s.size() : 1);

  ring::RingParams params;
  if (ring_.init(params, error) != 0) return false;
  if (const std::string missing = ring_.missing_client_socket_ops(); !missing.empty()) {
    error = missing;
    return false;
  }
  if (const int err = ring_.register_direct_table(s_.slots); err != 0) {
    error = "registering " + std::to_string(s_.slots) + " direct-descriptor slots: " + std::strerror(err) +
            " (a ring's table holds at most RLIMIT_NOFILE slots)";
    return false;
  }
  // Enough buffers that a burst of 101s or echoes rarely runs the ring dry
  // (a dry ring ends multishot recvs with ENOBUFS; they are re-armed).
  const std::uint32_t buffer_count = std::clamp<std::uint32_t>(next_pow2(s_.slots / 2), 256, 8192);
  if (buffers_.init(ring_, buffer_group, buffer_count, recv_buffer_bytes, error) != 0) return false;

  if (s_.tls != nullptr) {
    tls_ = std::make_unique<tls::Client>(*s_.tls, static_cast<tls::Sink&>(*this));
    if (!tls_->init(s_.slots, error)) return false;
  }
  conns_.assign(s_.slots, Conn{});
  for (auto& k : conns_) k.timer_prev = k.timer_next = nil;
  timers_.bind(conns_.data());
  free_slots_.reserve(s_.slots);
  for (std::uint32_t i = s_.slots; i > 0; --i) free_slots_.push_back(i - 1);
  dirty_.reserve(s_.slots);
  rearm_.reserve(s_.slots);

  // Staging: the request, then control frames; echo adds a full window.
  const Target& t = *s_.target;
  std::array<std::uint8_t, handshake::request_bytes_max> probe{};
  if (o_.mode == Mode::fanout) {
    subs_.assign(s_.slots, fanout::Subscriber{});
    // The last channel has the longest name: if its request fits, all do.
    if (fanout::subscribe_path(path_, t.path, o_.channel_prefix, o_.channels - 1) == 0) {
      error = "subscribe path for channel " + std::to_string(o_.channels - 1) + " is too long";
      return false;
    }
    subs_[0].channel = o_.channels - 1;
  }
  const std::size_t request_bytes = handshake::build_request(probe, t.host_header, request_path(0), handshake::Key{});
  if (request_bytes == 0) {
    error = "upgrade request does not fit in " + std::to_string(handshake::request_bytes_max) + " bytes";
    return false;
  }
  std::size_t half = std::max(request_bytes, 4 * control_frame_bytes_max);
  const bool echoes = o_.mode == Mode::echo || o_.verify_echo;
  window_ = o_.mode == Mode::echo ? o_.inflight : 1;
  if (o_.mode == Mode::echo)
    half += std::size_t{o_.inflight} * (ws::header_size_max + o_.size_bytes) + 2 * control_frame_bytes_max;
  else if (o_.verify_echo)
    half += ws::header_size_max + o_.size_bytes;  // the one message
  half_bytes_ = round_up(half, 64);
  // fanout: a delivery is the published body (--size) in the server's
  // envelope ({"type":"message","channel":...,"id":...,"data":...}).
  constexpr std::size_t envelope_bytes_max = 512;
  const std::size_t frame_max =
      ws::header_size_max +
      std::max<std::size_t>(ws::control_payload_max, echoes                     ? o_.size_bytes
                                                     : o_.mode == Mode::fanout ? o_.size_bytes + envelope_bytes_max
                                                                               : 0);
  carry_bytes_ = round_up(std::max<std::size_t>(handshake::response_bytes_max, frame_max), 64);
  if (!out_.init(std::size_t{s_.slots} * 2 * half_bytes_) || !carry_.init(std::size_t{s_.slots} * carry_bytes_) ||
      (echoes && !sent_.init(std::size_t{s_.slots} * window_ * sizeof(std::uint64_t)))) {
    error = "mapping per-connection staging for " + std::to_string(s_.slots) + " connections: " + std::strerror(errno);
    return false;
  }

  std::memcpy(&target_addr_, &t.addr, t.addr_len);
  const std::uint32_t sources = std::max<std::uint32_t>(1, s_.sources->sources);
  source_addrs_.assign(sources, sockaddr_storage{});
  by_source_.assign(sources, SourceCounts{});
  for (std::uint32_t i = 0; i < sources; ++i) {
    if (t.family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&source_addrs_[i]);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = s_.sources->spread ? htonl(source_ipv4(i)) : htonl(INADDR_ANY);
      source_len_ = sizeof(sockaddr_in);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&source_addrs_[i]);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_any;
      source_len_ = sizeof(sockaddr_in6);
    }
  }
  return true;
}

void Engine::run() {
  std::array<ring::Completion, reap_batch> cqes;
  for (;;) {
    std::uint64_t wait_us = idle_wait_us;
    if (phase_ == Phase::open && to_open_ > 0 && !free_slots_.empty()) {
      if (rate_per_s_ <= 0) {
        wait_us = 0;
      } else if (tokens_ < 1.0) {
        const double until_next_us = (1.0 - tokens_) / rate_per_s_ * 1e6;
        wait_us = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(until_next_us), pacing_wait_us_min, idle_wait_us);
      } else {
        wait_us = 0;
      }
    }
    if (const int err = ring_.submit_and_wait_us(wait_us); err != 0) {
      std::fprintf(stderr, "ringgate-load: thread %u: io_uring wait failed: %s\n", s_.index, std::strerror(err));
    }
    now_ns_ = monotonic_ns();
    ring_.drain(cqes, reap_rounds_max, [this](const ring::Completion& c) { dispatch(c); });
    buffers_.publish();
    // Multishot recvs that ended (ENOBUFS, or a full CQ) resume now that this
    // turn's buffers are back.
    for (const std::uint32_t slot : rearm_) {
      Conn& k = conns_[slot];
      k.flags &= static_cast<std::uint16_t>(~f_rearm_queued);
      // A stalled fanout subscriber stays unread until the close phase.
      if ((k.state == State::handshaking || k.state == State::open || k.state == State::closing) &&
          !(k.flags & f_recv_armed) && stall_of(slot) != fanout::Stall::paused)
        arm_recv(slot);
    }
    rearm_.clear();
    poll_command();
    if (phase_ == Phase::stop) break;
    if (phase_ == Phase::open) open_more();
    run_timers();
    flush_dirty();
    publish_live();
  }
  publish_live();
  if (tls_) steps_[0].tls.record_buffers_high_water = tls_->buffers_high_water();
}

void Engine::publish_live() {
  live_.attempted.store(attempted_, std::memory_order_relaxed);
  live_.upgraded.store(upgraded_, std::memory_order_relaxed);
  live_.failed.store(failed_, std::memory_order_relaxed);
  live_.open.store(open_, std::memory_order_relaxed);
  live_.slots_in_use.store(s_.slots - free_slots_.size(), std::memory_order_relaxed);
  live_.disconnects.store(disconnects_, std::memory_order_relaxed);
  live_.echo_msgs.store(echo_msgs_, std::memory_order_relaxed);
  live_.verifying.store(verifying_, std::memory_order_relaxed);
  live_.errors.store(errors_, std::memory_order_relaxed);
  live_.subscribed.store(subscribed_, std::memory_order_relaxed);
  live_.awaiting.store(awaiting_, std::memory_order_relaxed);
  live_.ready.store(ready_, std::memory_order_relaxed);
  live_.stalled.store(stalled_, std::memory_order_relaxed);
  live_.fanout_received.store(fanout_received_, std::memory_order_relaxed);
  live_.fanout_delivered.store(fanout_delivered_, std::memory_order_relaxed);
  live_.tls_handshakes.store(tls_handshakes_, std::memory_order_relaxed);
  live_.tls_resumed.store(tls_resumed_, std::memory_order_relaxed);
}

void Engine::poll_command() {
  const std::uint64_t command = s_.control->command.load(std::memory_order_acquire);
  if (command == command_) return;
  command_ = command;
  enter_phase(static_cast<Phase>(command & 0xFF), static_cast<std::uint32_t>(command >> 8));
  // What the phase started (verifications pending) is published before the
  // acknowledgement: the main thread reads the counters once it has it, and
  // must not take the previous turn's zero for "all answered".
  publish_live();
  live_.command_seen.store(command, std::memory_order_release);
}

void Engine::enter_phase(Phase phase, std::uint32_t step) {
  assert(step < steps_.size() || phase == Phase::stop);
  const Phase before = phase_;
  phase_ = phase;
  if (phase == Phase::open && (before != Phase::open || step != step_)) {
    step_ = step;
    const std::uint64_t total = o_.connections;
    to_open_ = share_of(total, s_.threads, s_.index);
    const double rate = o_.mode == Mode::ramp ? o_.rates_per_s[step] : o_.rate_per_s;
    rate_per_s_ = rate / s_.threads;
    tokens_ = rate_per_s_ > 0 ? 1.0 : 0.0;  // the first attempt goes at once
    refill_ns_ = now_ns_;
    return;
  }
  if (phase == Phase::settle) {
    to_open_ = 0;
    return;
  }
  if (phase == Phase::stop) {
    // The run ends here (an interrupt, or flood's end): attempts still
    // connecting or handshaking never resolved; count them as aborted.
    to_open_ = 0;
    for (std::uint32_t slot = 0; slot < s_.slots; ++slot) {
      const State state = conns_[slot].state;
      if (state == State::connecting || state == State::handshaking) resolve_oddity(slot, Oddity::aborted);
    }
    return;
  }
  if (phase == Phase::hold && o_.mode == Mode::fanout) {
    fanout_track();
    return;
  }
  if (phase == Phase::hold && o_.mode == Mode::echo) {
    // The measured window starts: every open connection fills its window.
    for (std::uint32_t slot = 0; slot < s_.slots; ++slot) {
      Conn& k = conns_[slot];
      if (k.state != State::open) continue;
      for (std::uint32_t i = 0; i < o_.inflight; ++i)
        if (!stage_echo_message(slot)) break;
    }
    return;
  }
  if (phase == Phase::verify) {
    // One message per connection still open; its echo, a timeout, or the
    // connection going ends the check (verify_done).
    for (std::uint32_t slot = 0; slot < s_.slots; ++slot) {
      Conn& k = conns_[slot];
      if (k.state != State::open) continue;
      StepStats& st = stats_of(k);
      ++st.held_checked;
      if (!stage_echo_message(slot)) {
        ++st.held_echo_failed;  // no room to stage: protocol_error() tore it down
        continue;
      }
      k.flags |= f_verifying;
      ++verifying_;
      timer_add(slot, TimerList::verify, o_.close_timeout_ms);
    }
    return;
  }
  if (phase == Phase::close) {
    to_open_ = 0;
    drain_started_ms_ = rel_ms();
    for (std::uint32_t slot = 0; slot < s_.slots; ++slot) {
      Conn& k = conns_[slot];
      switch (k.state) {
        case State::connecting:
        case State::handshaking:
          resolve_oddity(slot, Oddity::aborted);
          teardown(slot);
          break;
        case State::open:
          if (stall_of(slot) == fanout::Stall::paused) {
            drain_stalled(slot);
          } else if (k.inflight > 0) {
            // Echoes in flight are answered before our close goes out (a
            // server may drop what it has not yet echoed once it sees a
            // close), bounded by --close-timeout; what is still owed then
            // counts as unanswered.
            k.flags |= f_draining;
            timer_add(slot, TimerList::closing, o_.close_timeout_ms);
          } else {
            start_close(slot, 1000);
          }
          break;
        default: break;
      }
    }
  }
}

void Engine::open_more() {
  if (to_open_ == 0) return;
  std::uint64_t budget = attempts_per_turn_max;
  if (rate_per_s_ > 0) {
    const double depth = std::max(1.0, rate_per_s_ * bucket_depth_s);
    tokens_ = std::min(depth, tokens_ + rate_per_s_ * static_cast<double>(now_ns_ - refill_ns_) / 1e9);
    refill_ns_ = now_ns_;
    budget = std::min<std::uint64_t>(budget, static_cast<std::uint64_t>(tokens_));
  }
  budget = std::min<std::uint64_t>({budget, to_open_, free_slots_.size()});
  for (std::uint64_t i = 0; i < budget; ++i) {
    if (!start_attempt()) break;
    --to_open_;
    if (rate_per_s_ > 0) tokens_ -= 1.0;
  }
}

// socket -> setsockopt(IP_BIND_ADDRESS_NO_PORT) -> setsockopt(TCP_NODELAY)
// -> bind(source, port 0) -> connect, linked, in the slot we picked.  NO_PORT
// defers the port choice to connect(), which picks by the full 4-tuple, so
// one source address serves every destination instead of one port per
// socket.  NODELAY: echo latency must be the server's, not Nagle's.  All but
// the connect skip their CQE on success, so a chain posts exactly one CQE:
// the first failure, or the connect's result.
bool Engine::start_attempt() {
  static const int one = 1;
  if (free_slots_.empty() || !ring_.reserve(chain_sqes)) return false;
  const std::uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  Conn& k = conns_[slot];
  const std::uint32_t generation = k.generation;
  k = Conn{};
  k.generation = generation;
  k.timer_prev = k.timer_next = nil;
  k.id = static_cast<std::uint32_t>(attempt_number(attempts_, s_.threads, s_.index));
  ++attempts_;
  k.step = static_cast<std::uint8_t>(step_);
  k.started_ns = now_ns_;
  k.state = State::connecting;
  const std::uint64_t m = mix64(key_seed_ + 0x6A09E667F3BCC909ull * (k.id + 1));
  std::memcpy(k.mask.data(), &m, 4);
  ++stats_of(k).attempted;
  ++attempted_;
  if (o_.mode == Mode::fanout) {
    subs_[slot] = fanout::Subscriber{};
    subs_[slot].channel = static_cast<std::uint32_t>(k.id % o_.channels);  // subscriber i takes channel i mod M
  }

  const std::uint32_t source_index = source_of(k.id, static_cast<std::uint32_t>(source_addrs_.size()));
  ++by_source_[source_index].attempted;
  const sockaddr* source = reinterpret_cast<const sockaddr*>(&source_addrs_[source_index]);
  const ring::Chain link{.link_next = true, .skip_success = true};
  const int domain = s_.target->family;
  const bool ok = ring_.socket_direct(domain, SOCK_STREAM, slot, tag(op_socket, slot), link) &&
                  ring_.setsockopt_int(slot, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, tag(op_sockopt, slot), link) &&
                  ring_.setsockopt_int(slot, IPPROTO_TCP, TCP_NODELAY, &one, tag(op_sockopt, slot), link) &&
                  ring_.bind_direct(slot, source, source_len_, tag(op_bind, slot), link) &&
                  ring_.connect_direct(slot, reinterpret_cast<const sockaddr*>(&target_addr_), s_.target->addr_len,
                                       tag(op_connect, slot), {});
  assert(ok);  // reserve() made room for the whole chain
  (void)ok;
  k.ops = 1;  // the chain: one CQE will end it
  timer_add(slot, TimerList::handshake, o_.handshake_timeout_ms);
  return true;
}

void Engine::dispatch(const ring::Completion& c) {
  // With TLS a turn can spend milliseconds in handshakes: each completion
  // reads the clock, so latencies are not those of the turn's start.
  if (tls_) now_ns_ = monotonic_ns();
  const Op op = static_cast<Op>(c.tag.op);
  const std::uint32_t slot = c.tag.index;
  assert(slot < s_.slots);
  Conn& k = conns_[slot];
  if ((k.generation & ring::generation_mask) != c.tag.generation || k.state == State::free) {
    // A completion for a connection that is gone; its buffer still goes back.
    if (c.has_buffer()) buffers_.recycle(c.buffer_id());
    return;
  }
  switch (op) {
    case op_socket:
    case op_sockopt:
    case op_bind:
    case op_connect: on_chain_end(slot, c); break;
    case op_recv: on_recv(slot, c); break;
    case op_send: on_send(slot, c); break;
    case op_cancel:
      --k.ops;
      maybe_release(slot);
      break;
    case op_close: on_close(slot, c); break;
    default: assert(false && "unknown op"); break;
  }
}

void Engine::on_chain_end(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  --k.ops;
  if (k.state != State::connecting) {  // timed out or aborted meanwhile
    maybe_release(slot);
    return;
  }
  if (!c.ok()) {
    resolve_errno(slot, c.error());
    teardown(slot);
    return;
  }
  const handshake::Key key = key_of(k);
  const std::size_t n = handshake::build_request({half(slot, k.fill_half), half_bytes_}, s_.target->host_header,
                                                 request_path(slot), key);
  assert(n > 0);  // sized at start-up
  k.staged_len = static_cast<std::uint32_t>(n);
  k.state = State::handshaking;
  if (tls_) {
    // The request waits in the staging half until the TLS handshake is
    // done; the ClientHello goes first.
    if (!tls_->start(slot, now_ns_)) {
      count_tls_failure(slot, tls::Failure::internal, 0, "no SSL could be made");
      resolve(slot, Outcome::tls_failed);
      teardown(slot);
      return;
    }
    if (k.state != State::handshaking) return;  // failed at once
  }
  flush(slot);
  arm_recv(slot);
}

void Engine::arm_recv(std::uint32_t slot) {
  Conn& k = conns_[slot];
  assert(!(k.flags & f_recv_armed));
  if (!ring_.recv_multishot(slot, buffer_group, tag(op_recv, slot))) {
    if (!(k.flags & f_resolved)) resolve_oddity(slot, Oddity::no_sqe);
    teardown(slot);
    return;
  }
  k.flags |= f_recv_armed;
  ++k.ops;
}

void Engine::on_recv(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  const bool ended = !c.more();
  if (ended) {
    k.flags &= static_cast<std::uint16_t>(~f_recv_armed);
    --k.ops;
  }
  if (c.res > 0) {
    const std::span<const std::uint8_t> data = buffers_.buffer(c.buffer_id(), static_cast<std::uint32_t>(c.res));
    if (tls_) {
      // Ciphertext: the plaintext comes back through tls_plain().
      if (k.state >= State::handshaking && k.state <= State::closing) {
        tls_->on_recv(slot, data, now_ns_);
        // A handshake flight (TLS 1.2's second), an answer to a KeyUpdate.
        if (!tls_->pending(slot).empty()) mark_dirty(slot);
      }
    } else {
      switch (k.state) {
        case State::handshaking: handshake_bytes(slot, data); break;
        case State::open:
        case State::closing: ws_bytes(slot, data); break;
        default: break;  // going away: input is discarded
      }
    }
    buffers_.recycle(c.buffer_id());
    if (ended && !(k.flags & f_recv_armed) && k.state >= State::handshaking && k.state <= State::closing &&
        !(k.flags & f_rearm_queued)) {
      k.flags |= f_rearm_queued;
      rearm_.push_back(slot);
    }
    // A draining stalled subscriber is not quiet yet (bounded: no new grace
    // after --close-timeout).
    if (k.timer_list == TimerList::drain && rel_ms() - drain_started_ms_ < o_.close_timeout_ms)
      timer_add(slot, TimerList::drain, stall_drain_quiet_ms);
  } else if (c.res == 0) {
    // EOF.
    switch (k.state) {
      case State::handshaking: resolve_oddity(slot, Oddity::eof_before_response); break;
      case State::open: lost_after_upgrade(slot); break;
      case State::closing:
        if (k.flags & f_we_closed) {
          if (k.flags & f_got_close) ++stats_of(k).closed_clean;
          else ++stats_of(k).closed_eof;
        }
        break;
      default: break;
    }
    teardown(slot);
  } else if (c.error() == ENOBUFS || (c.error() == ECANCELED && stall_of(slot) == fanout::Stall::draining)) {
    // Out of buffers; or a stalled subscriber's cancel completed only after
    // its drain began: read on.
    if (!(k.flags & f_rearm_queued) && k.state >= State::handshaking && k.state <= State::closing) {
      k.flags |= f_rearm_queued;
      rearm_.push_back(slot);
    }
  } else if (c.error() != ECANCELED) {
    count_socket_error(slot, c.error());
    teardown(slot);
  }
  maybe_release(slot);
}

// A recv or send failed with `err`: charge it to what the connection was
// doing (an attempt not yet resolved, an upgraded connection, or its close).
void Engine::count_socket_error(std::uint32_t slot, int err) {
  Conn& k = conns_[slot];
  switch (k.state) {
    case State::handshaking: resolve_errno(slot, err); break;
    case State::open: lost_after_upgrade(slot); break;
    case State::closing:
      ++stats_of(k).close_errors;
      ++errors_;
      break;
    default: break;
  }
}

void Engine::on_send(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  --k.ops;
  k.flags &= static_cast<std::uint16_t>(~f_send_in_flight);
  if (!c.ok()) {
    if (c.error() != ECANCELED) count_socket_error(slot, c.error());
    teardown(slot);
    maybe_release(slot);
    return;
  }
  if (k.state >= State::tearing_down) {
    maybe_release(slot);
    return;
  }
  if (tls_) {
    tls_->sent(slot, static_cast<std::uint32_t>(c.res));
    flush_tls(slot);  // what a short send left, records sealed meanwhile, the rest of the staging
    return;
  }
  k.flight_sent += static_cast<std::uint32_t>(c.res);
  if (k.flight_sent < k.flight_len) {
    // A short send (socket buffer full): the rest goes now, in order.
    const std::uint8_t* base = half(slot, static_cast<std::uint8_t>(k.fill_half ^ 1));
    if (!ring_.send(slot, {base + k.flight_sent, k.flight_len - k.flight_sent}, tag(op_send, slot))) {
      teardown(slot);
      return;
    }
    k.flags |= f_send_in_flight;
    ++k.ops;
    return;
  }
  k.flight_len = k.flight_sent = 0;
  if (k.staged_len > 0) flush(slot);
}

void Engine::on_close(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  --k.ops;
  // EBADF: the chain failed before IORING_OP_SOCKET filled the slot.
  if (!c.ok() && c.error() != EBADF)
    std::fprintf(stderr, "ringgate-load: thread %u: closing slot %u: %s\n", s_.index, slot, std::strerror(c.error()));
  release(slot);
}

// ---------------------------------------------------------------- handshake

void Engine::handshake_bytes(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  std::span<const std::uint8_t> seen = data;
  const std::uint32_t carried = k.carry_len;  // bytes of `seen` before `data`
  if (k.carry_len > 0) {
    // The response arrived split: collect it (bounded) in the carry.
    const std::size_t take = std::min<std::size_t>(data.size(), carry_bytes_ - k.carry_len);
    std::memcpy(carry(slot) + k.carry_len, data.data(), take);
    k.carry_len += static_cast<std::uint32_t>(take);
    seen = {carry(slot), k.carry_len};
  }
  const proto::http::AcceptKey accept = proto::http::accept_key({key_of(k).data(), handshake::Key{}.size()});
  const handshake::Response r = handshake::parse_response(seen, accept);
  if (r.status == handshake::Status::need_more) {
    if (k.carry_len == 0) {
      // need_more: below response_bytes_max <= carry_bytes_ (a recv buffer, or a TLS record's plaintext)
      std::memcpy(carry(slot), data.data(), data.size());
      k.carry_len = static_cast<std::uint32_t>(data.size());
    }
    return;
  }
  if (r.status == handshake::Status::malformed) {
    resolve_oddity(slot, Oddity::malformed_response);
    teardown(slot);
    return;
  }
  if (r.code != 101) {
    if (r.code >= 400 && r.code <= 599) stats_of(k).refused_us.record((now_ns_ - k.started_ns) / 1000);
    const Outcome outcome = http_outcome(r.code, r.retry_after);
    if (outcome == Outcome::other)
      ++stats_of(k).other.by_status[std::min<std::size_t>(r.code, OtherDetail::status_max - 1)];
    resolve(slot, outcome);
    teardown(slot);
    return;
  }
  if (!r.accept_matches || !r.upgrade_websocket) {
    resolve_oddity(slot, r.accept_matches ? Oddity::no_upgrade_header : Oddity::bad_accept);
    teardown(slot);
    return;
  }
  // Bytes after the headers already belong to the WebSocket stream.  The
  // headers end inside `data` (what was carried was not yet complete), so
  // the rest is read from `data` itself, whole even where the carry took
  // only part of it: the carry is the frames' from now on.  (`data` may
  // hold 16 KiB of a TLS record's plaintext: more than a recv buffer.)
  const std::span<const std::uint8_t> rest = data.subspan(r.header_bytes - carried);
  k.carry_len = 0;
  upgraded(slot);
  if (!rest.empty()) ws_bytes(slot, rest);
}

void Engine::upgraded(std::uint32_t slot) {
  Conn& k = conns_[slot];
  timer_remove(slot);
  k.state = State::open;
  k.flags |= f_upgraded;
  set_open(slot, true);
  stats_of(k).handshake_us.record((now_ns_ - k.started_ns) / 1000);
  resolve(slot, Outcome::upgraded);
  if (o_.mode == Mode::fanout) ++awaiting_;  // until the subscribed notice
  // Echo connections that upgrade while the window is open join it at once.
  if (o_.mode == Mode::echo && phase_ == Phase::hold)
    for (std::uint32_t i = 0; i < o_.inflight; ++i)
      if (!stage_echo_message(slot)) break;
}

void Engine::resolve(std::uint32_t slot, Outcome outcome) {
  Conn& k = conns_[slot];
  if (k.flags & f_resolved) return;
  k.flags |= f_resolved;
  StepStats& st = stats_of(k);
  ++st.outcomes[static_cast<std::size_t>(outcome)];
  ++source_of_conn(k).outcomes[static_cast<std::size_t>(outcome)];
  if (outcome == Outcome::upgraded) {
    ++upgraded_;
    return;
  }
  timer_remove(slot);
  ++failed_;
  ++errors_;
  if (k.id < st.first_failure.attempt)
    st.first_failure = {k.id, k.started_ns - s_.epoch_ns, now_ns_ - s_.epoch_ns, outcome};
}

void Engine::resolve_errno(std::uint32_t slot, int err) {
  if (err == ETIMEDOUT || err == ECANCELED) tls_unfinished(slot, tls::Failure::timeout, "timed out");
  else
    tls_unfinished(slot, tls::Failure::reset,
                   err == ECONNRESET || err == EPIPE ? "connection reset" : std::strerror(err));
  switch (err) {
    case ECONNRESET:
    case EPIPE: resolve(slot, Outcome::reset); break;
    case ECONNREFUSED: resolve(slot, Outcome::refused); break;
    case ETIMEDOUT:
    case ECANCELED: resolve(slot, Outcome::timed_out); break;
    default:
      ++stats_of(conns_[slot]).other.by_errno[std::min<std::size_t>(static_cast<std::size_t>(err),
                                                                     OtherDetail::errno_max - 1)];
      resolve(slot, Outcome::other);
      break;
  }
}

void Engine::resolve_oddity(std::uint32_t slot, Oddity oddity) {
  if (conns_[slot].flags & f_resolved) return;
  switch (oddity) {
    case Oddity::eof_before_response:
      tls_unfinished(slot, tls::Failure::eof, "the server closed the connection");
      break;
    case Oddity::aborted: tls_unfinished(slot, tls::Failure::aborted, "the run ended"); break;
    default: tls_unfinished(slot, tls::Failure::internal, std::string(oddity_name(oddity)).c_str()); break;
  }
  ++stats_of(conns_[slot]).other.by_oddity[static_cast<std::size_t>(oddity)];
  resolve(slot, Outcome::other);
}

// An upgraded connection that the server closed or reset before we closed it.
void Engine::lost_after_upgrade(std::uint32_t slot) {
  Conn& k = conns_[slot];
  verify_done(slot, false);  // a server close or reset is no echo
  if (k.flags & (f_we_closed | f_lost_counted)) return;
  k.flags |= f_lost_counted;
  if (stalled(slot)) {
    // What --stall-percent provokes: counted as such, not as a disconnect.
    fanout::end_stall(subs_[slot], true, stats_of(k).fanout);
    set_open(slot, false);
    return;
  }
  ++stats_of(k).disconnects_after_success;
  ++disconnects_;
  ++errors_;
  set_open(slot, false);
}

void Engine::protocol_error(std::uint32_t slot) {
  // A bad frame ends a stalled subscriber on our side, not the server's.
  if (stalled(slot)) fanout::end_stall(subs_[slot], false, stats_of(conns_[slot]).fanout);
  ++stats_of(conns_[slot]).protocol_errors;
  ++errors_;
  lost_after_upgrade(slot);
  teardown(slot);
}

void Engine::set_open(std::uint32_t slot, bool open) {
  Conn& k = conns_[slot];
  if (open && !(k.flags & f_counted_open)) {
    k.flags |= f_counted_open;
    ++open_;
  } else if (!open && (k.flags & f_counted_open)) {
    k.flags &= static_cast<std::uint16_t>(~f_counted_open);
    --open_;
    if (o_.mode == Mode::fanout && !subs_[slot].subscribed) --awaiting_;  // gone before its notice
  }
}

// ---------------------------------------------------------------- frames

// Splits the stream into frames (proto/ws_wire.h): a frame wholly inside
// `data` is handled in place (the common case); one that straddles recv
// buffers is completed in the connection's carry first.
void Engine::ws_bytes(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  ws::FrameSplitter split({carry(slot), carry_bytes_}, k.carry_len);
  while (!data.empty() && k.state >= State::open && k.state <= State::closing) {
    const ws::FrameSplitter::Next next = split.next(data);
    data = data.subspan(next.consumed);
    switch (next.status) {
      case ws::SplitStatus::frame:
        if (!frame(slot, next.header, next.payload)) return;
        break;
      case ws::SplitStatus::need_more: return;  // the rest of `data` waits in the carry
      case ws::SplitStatus::bad_length:
      case ws::SplitStatus::too_large:  // larger than any frame this run expects
        protocol_error(slot);
        return;
    }
  }
}

// Handles one complete frame.  Returns false when the connection went away.
bool Engine::frame(std::uint32_t slot, const ws::FrameHeader& h, std::span<const std::uint8_t> payload) {
  Conn& k = conns_[slot];
  if (h.masked || h.rsv != 0) {
    protocol_error(slot);  // RFC 6455 5.1: servers never mask
    return false;
  }
  switch (static_cast<ws::Opcode>(h.opcode)) {
    case ws::Opcode::text:
    case ws::Opcode::binary:
    case ws::Opcode::continuation: data_frame(slot, h, payload); return k.state <= State::closing;
    case ws::Opcode::ping:
      ++stats_of(k).pings;
      if (!(k.flags & f_sent_close)) stage_frame(slot, ws::Opcode::pong, payload);
      return true;
    case ws::Opcode::pong: return true;
    case ws::Opcode::close: {
      if (k.flags & f_got_close) {
        // RFC 6455 5.5.1: nothing may follow a close frame.  A second one
        // is a protocol error, never another close_1013 or disconnect.
        protocol_error(slot);
        return false;
      }
      k.flags |= f_got_close;
      k.close_code = payload.size() >= 2 ? static_cast<std::uint16_t>((payload[0] << 8) | payload[1]) : 1005;
      if (!(k.flags & f_we_closed)) {
        // The server started the close: a disconnect after success, and for
        // 1013 the attempt's outcome becomes close_1013.
        if (k.close_code == 1013 && !stalled(slot)) {  // a stalled subscriber's close is not a refusal
          StepStats& st = stats_of(k);
          --st.outcomes[static_cast<std::size_t>(Outcome::upgraded)];
          ++st.outcomes[static_cast<std::size_t>(Outcome::close_1013)];
          SourceCounts& src = source_of_conn(k);
          --src.outcomes[static_cast<std::size_t>(Outcome::upgraded)];
          ++src.outcomes[static_cast<std::size_t>(Outcome::close_1013)];
          st.refused_us.record((now_ns_ - k.started_ns) / 1000);
          --upgraded_;
          ++failed_;
          if (k.id < st.first_failure.attempt)
            st.first_failure = {k.id, k.started_ns - s_.epoch_ns, now_ns_ - s_.epoch_ns, Outcome::close_1013};
        }
        lost_after_upgrade(slot);
        if (!(k.flags & f_sent_close)) {
          // Reply with the same code (none for 1005), then wait for EOF.
          const std::uint8_t code[2] = {static_cast<std::uint8_t>(k.close_code >> 8),
                                        static_cast<std::uint8_t>(k.close_code & 0xFF)};
          if (!stage_frame(slot, ws::Opcode::close,
                           k.close_code == 1005 ? std::span<const std::uint8_t>{} : std::span<const std::uint8_t>{code, 2}))
            return false;  // protocol_error() already started the teardown
          k.flags |= f_sent_close;
        }
        k.state = State::closing;
        timer_add(slot, TimerList::closing, o_.close_timeout_ms);
      }
      return true;
    }
    default: protocol_error(slot); return false;
  }
}

void Engine::data_frame(std::uint32_t slot, const ws::FrameHeader& h, std::span<const std::uint8_t> payload) {
  Conn& k = conns_[slot];
  if (o_.mode == Mode::fanout) {
    fanout_frame(slot, h, payload);
    return;
  }
  if (o_.mode != Mode::echo && !(k.flags & f_verifying)) {
    if (h.fin) ++stats_of(k).unexpected_messages;
    return;
  }
  const bool first = static_cast<ws::Opcode>(h.opcode) != ws::Opcode::continuation;
  if (first == ((k.flags & f_in_message) != 0)) {
    protocol_error(slot);  // a continuation out of nowhere, or a new message inside one
    return;
  }
  if (first && h.fin) {
    // The whole message in one frame: the common case.
    const bool type_ok = h.opcode == (o_.payload == PayloadKind::text ? 1 : 2);
    std::uint64_t seq = k.expect_seq;
    bool ok = payload.size() == o_.size_bytes &&
              payload::matches(payload, o_.payload, k.id, carried_seq(k.expect_seq));
    if (!ok) {
      // Not the expected message: another intact message of this connection
      // (an echo lost or duplicated before it), or corrupt.
      std::uint32_t c = 0;
      std::uint64_t carried = 0;
      if (payload.size() == o_.size_bytes && payload::read_ids(payload, o_.payload, c, carried) && c == k.id &&
          payload::matches(payload, o_.payload, k.id, carried)) {
        switch (locate_echo(k, carried, seq)) {
          case EchoSeq::ahead: ok = true; break;
          case EchoSeq::behind: duplicate_echo(slot); return;
          case EchoSeq::unknown: break;  // never sent: corrupt
        }
      }
    }
    echo_received(slot, seq, ok && type_ok, payload.size());
    return;
  }
  // A fragmented echo: check each fragment at its offset against the message
  // named by the first fragment's header (the expected one when the first
  // fragment is too short to carry it).
  if (first) {
    k.flags |= f_in_message;
    k.flags &= static_cast<std::uint16_t>(~f_message_bad);
    k.message_offset = 0;
    k.message_opcode = h.opcode;
    k.message_seq = k.expect_seq;
    std::uint32_t c = 0;
    std::uint64_t carried = 0;
    if (payload::read_ids(payload, o_.payload, c, carried) && c == k.id && carried != carried_seq(k.expect_seq)) {
      std::uint64_t seq = k.expect_seq;
      const EchoSeq where = locate_echo(k, carried, seq);
      if (where == EchoSeq::ahead) k.message_seq = seq;
      if (where == EchoSeq::behind) k.flags |= f_message_dup;
    }
  }
  if (k.message_offset + payload.size() > o_.size_bytes ||
      !payload::matches(payload, o_.payload, k.id, carried_seq(k.message_seq), k.message_offset))
    k.flags |= f_message_bad;
  k.message_offset += static_cast<std::uint32_t>(payload.size());
  if (!h.fin) return;
  k.flags &= static_cast<std::uint16_t>(~f_in_message);
  const bool ok = !(k.flags & f_message_bad) && k.message_offset == o_.size_bytes &&
                  k.message_opcode == (o_.payload == PayloadKind::text ? 1 : 2);
  if ((k.flags & f_message_dup) && ok) {
    k.flags &= static_cast<std::uint16_t>(~f_message_dup);
    duplicate_echo(slot);
    return;
  }
  k.flags &= static_cast<std::uint16_t>(~f_message_dup);
  echo_received(slot, k.message_seq, ok, k.message_offset);
}

// The sequence as a payload carries it (text keeps 48 bits).
std::uint64_t Engine::carried_seq(std::uint64_t seq) const noexcept {
  return o_.payload == PayloadKind::text ? (seq & text_sequence_mask) : seq;
}

// Places an intact message's carried sequence in the connection's window:
// ahead (sent, not yet answered, after the expected one; `seq` gets its full
// value), behind (answered or given up as lost already: a duplicate), or
// unknown (never sent).
Engine::EchoSeq Engine::locate_echo(const Conn& k, std::uint64_t carried, std::uint64_t& seq) const noexcept {
  const std::uint64_t mask = o_.payload == PayloadKind::text ? text_sequence_mask : ~std::uint64_t{0};
  const std::uint64_t ahead = (carried - k.expect_seq) & mask;
  if (ahead < k.next_seq - k.expect_seq) {
    seq = k.expect_seq + ahead;
    return EchoSeq::ahead;
  }
  const std::uint64_t behind = (k.expect_seq - carried) & mask;
  if (behind >= 1 && behind <= k.expect_seq) return EchoSeq::behind;
  return EchoSeq::unknown;
}

void Engine::duplicate_echo(std::uint32_t slot) {
  Conn& k = conns_[slot];
  StepStats& st = stats_of(k);
  ++st.echo_total;
  ++st.out_of_order;
  ++st.duplicates;
  ++errors_;
}

// An echo answering message `seq` (expect_seq <= seq < next_seq).  Messages
// between expect_seq and seq were skipped: they count as lost and the
// window resyncs after seq.  Only verified echoes count in the throughput
// and the RTT, which uses seq's own send time.
void Engine::echo_received(std::uint32_t slot, std::uint64_t seq, bool ok, std::size_t bytes) {
  Conn& k = conns_[slot];
  StepStats& st = stats_of(k);
  if (k.inflight == 0) {
    protocol_error(slot);  // an echo of nothing we sent
    return;
  }
  ++st.echo_total;
  if (seq > k.expect_seq) {
    const std::uint64_t skipped = seq - k.expect_seq;
    st.lost += skipped;
    errors_ += skipped;
    ++st.out_of_order;
    k.inflight -= static_cast<std::uint32_t>(skipped);
  }
  if (!ok) {
    ++st.mismatches;
    ++errors_;
  } else {
    st.rtt_us.record((now_ns_ - sent_at(slot)[seq % window_]) / 1000);
  }
  k.expect_seq = seq + 1;
  --k.inflight;
  verify_done(slot, ok);
  if ((k.flags & f_draining) && k.inflight == 0 && k.state == State::open) {
    timer_remove(slot);
    start_close(slot, 1000);
    return;
  }
  if (phase_ == Phase::hold) {
    if (ok) {
      ++st.echo_msgs;
      st.echo_bytes += bytes;
      ++echo_msgs_;
    }
    if (k.state == State::open)
      while (stage_echo_message(slot)) {
      }  // keep the window full
  }
}

// ---------------------------------------------------------------- fanout

std::string_view Engine::request_path(std::uint32_t slot) {
  if (o_.mode != Mode::fanout) return s_.target->path;
  const std::size_t n = fanout::subscribe_path(path_, s_.target->path, o_.channel_prefix, subs_[slot].channel);
  assert(n > 0);  // the longest was checked at start-up
  return {path_.data(), n};
}

// The server sends each notice as one text frame.
void Engine::fanout_frame(std::uint32_t slot, const ws::FrameHeader& h, std::span<const std::uint8_t> payload) {
  fanout::Counts& st = stats_of(conns_[slot]).fanout;
  if (!h.fin || static_cast<ws::Opcode>(h.opcode) != ws::Opcode::text) {
    ++st.malformed;
    ++errors_;
    return;
  }
  const fanout::Notice n = fanout::read_notice({reinterpret_cast<const char*>(payload.data()), payload.size()});
  const std::uint32_t channel = fanout::channel_index(n.channel, o_.channel_prefix, o_.channels);
  switch (n.kind) {
    case fanout::NoticeKind::subscribed: fanout_subscribed(slot, channel); return;
    case fanout::NoticeKind::message: fanout_message(slot, n, channel); return;
    case fanout::NoticeKind::other:  // an error or unsubscribed notice: never part of a clean run
    case fanout::NoticeKind::malformed:
      ++st.malformed;
      ++errors_;
      return;
  }
}

void Engine::fanout_subscribed(std::uint32_t slot, std::uint32_t channel) {
  Conn& k = conns_[slot];
  fanout::Subscriber& sub = subs_[slot];
  fanout::Counts& st = stats_of(k).fanout;
  if (channel != sub.channel || sub.subscribed) {
    ++st.misrouted;  // another channel's confirmation, or a second one
    ++errors_;
    return;
  }
  sub.subscribed = true;
  ++st.subscribed;
  ++subscribed_;
  if (k.flags & f_counted_open) --awaiting_;
}

// A message at a subscriber: checked against its channel's sequence, timed
// from the send time it carries, and counted on the board when it is new.
// (Stalled subscribers and those not ready in time are only counted.)
void Engine::fanout_message(std::uint32_t slot, const fanout::Notice& n, std::uint32_t channel) {
  const fanout::Taken t =
      fanout::take_message(subs_[slot], channel, n, now_ns_, *s_.board, stats_of(conns_[slot]).fanout);
  if (t.checked) ++fanout_received_;
  if (t.error) ++errors_;
  if (t.delivered) ++fanout_delivered_;
}

// Publishing begins: the subscribers ready now are the ones checked, and
// each counts on its channel, except the --stall-percent ones, which stop
// reading here: their multishot receive is cancelled (its last CQE comes
// back ECANCELED) and not re-armed before the close phase, so the kernel's
// receive buffer fills and the server's sends to them back up.  No attempt
// starts after this, so no tracked slot is ever reused.
void Engine::fanout_track() {
  to_open_ = 0;
  for (std::uint32_t slot = 0; slot < s_.slots; ++slot) {
    fanout::Subscriber& sub = subs_[slot];
    Conn& k = conns_[slot];
    if (k.state != State::open || !sub.subscribed || sub.tracked || sub.stall != fanout::Stall::none) continue;
    bool stall = fanout::stalls(k.id, o_.connections, o_.channels, o_.stall_percent);
    if (stall && (k.flags & f_recv_armed)) {
      if (ring_.cancel_tag(tag(op_recv, slot), tag(op_cancel, slot))) ++k.ops;
      else stall = false;  // it cannot be stopped from reading: checked like the others
    }
    fanout::begin_publishing(sub, stall, *s_.board, stats_of(k).fanout);
    ++ready_;
    if (stall) ++stalled_;
  }
}

// Close phase: a stalled subscriber is read again, before any close of
// ours, so whatever ends it now (a close frame, EOF, a reset: all queued
// behind the messages it did not read) is the server's doing.  Quiet for
// stall_drain_quiet_ms means the server kept it: we close it (run_timers).
void Engine::drain_stalled(std::uint32_t slot) {
  Conn& k = conns_[slot];
  subs_[slot].stall = fanout::Stall::draining;
  timer_add(slot, TimerList::drain, stall_drain_quiet_ms);
  // At once, or (a cancel still on its way) when on_recv sees it complete.
  if (!(k.flags & (f_recv_armed | f_rearm_queued))) arm_recv(slot);
}

// Ends a --verify-echo check (once; no-op for a connection not checked).
// Errors are already counted by whatever ended it (mismatch, unanswered,
// disconnect).
void Engine::verify_done(std::uint32_t slot, bool echoed) {
  Conn& k = conns_[slot];
  if (!(k.flags & f_verifying)) return;
  k.flags &= static_cast<std::uint16_t>(~f_verifying);
  --verifying_;
  if (k.timer_list == TimerList::verify) timer_remove(slot);
  StepStats& st = stats_of(k);
  if (echoed) ++st.held_echoed;
  else ++st.held_echo_failed;
}

// Echoes still owed when a connection goes: unanswered, and errors.
void Engine::count_unanswered(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.inflight == 0) return;
  stats_of(k).unanswered += k.inflight;
  errors_ += k.inflight;
  k.expect_seq += k.inflight;
  k.inflight = 0;
}

// ---------------------------------------------------------------- sending

// Room for `bytes` in the filling half, or null.  The halves are sized for a
// full echo window plus control frames, so null means a bug, not load.
std::uint8_t* Engine::stage(std::uint32_t slot, std::size_t bytes) {
  Conn& k = conns_[slot];
  if (k.staged_len + bytes > half_bytes_) return nullptr;
  std::uint8_t* p = half(slot, k.fill_half) + k.staged_len;
  k.staged_len += static_cast<std::uint32_t>(bytes);
  mark_dirty(slot);
  return p;
}

bool Engine::stage_frame(std::uint32_t slot, ws::Opcode opcode, std::span<const std::uint8_t> payload) {
  Conn& k = conns_[slot];
  std::array<std::uint8_t, ws::header_size_max> header{};
  const std::size_t hl = ws::encode_header(header, opcode, true, payload.size(), k.mask.data());
  std::uint8_t* p = stage(slot, hl + payload.size());
  if (!p) {
    protocol_error(slot);
    return false;
  }
  std::memcpy(p, header.data(), hl);
  std::memcpy(p + hl, payload.data(), payload.size());
  ws::mask_bytes({p + hl, payload.size()}, k.mask);
  return true;
}

bool Engine::stage_echo_message(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.inflight >= window_ || (k.flags & f_sent_close)) return false;
  const ws::Opcode opcode = o_.payload == PayloadKind::text ? ws::Opcode::text : ws::Opcode::binary;
  std::array<std::uint8_t, ws::header_size_max> header{};
  const std::size_t hl = ws::encode_header(header, opcode, true, o_.size_bytes, k.mask.data());
  std::uint8_t* p = stage(slot, hl + o_.size_bytes);
  if (!p) {
    protocol_error(slot);
    return false;
  }
  std::memcpy(p, header.data(), hl);
  const std::uint64_t seq = o_.payload == PayloadKind::text ? (k.next_seq & text_sequence_mask) : k.next_seq;
  payload::fill({p + hl, o_.size_bytes}, o_.payload, k.id, seq);
  ws::mask_bytes({p + hl, o_.size_bytes}, k.mask);
  sent_at(slot)[k.next_seq % window_] = now_ns_;
  ++k.next_seq;
  ++k.inflight;
  return true;
}

void Engine::start_close(std::uint32_t slot, std::uint16_t code) {
  Conn& k = conns_[slot];
  if (k.flags & f_sent_close) return;
  const std::uint8_t payload[2] = {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code & 0xFF)};
  k.flags |= f_we_closed;
  if (!stage_frame(slot, ws::Opcode::close, payload)) return;
  k.flags |= f_sent_close;
  set_open(slot, false);
  k.state = State::closing;
  timer_add(slot, TimerList::closing, o_.close_timeout_ms);
}

void Engine::mark_dirty(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.flags & f_dirty) return;
  k.flags |= f_dirty;
  dirty_.push_back(slot);
}

// One send per connection per turn carries everything staged in the turn.
void Engine::flush_dirty() {
  for (const std::uint32_t slot : dirty_) {
    Conn& k = conns_[slot];
    k.flags &= static_cast<std::uint16_t>(~f_dirty);
    if (k.state >= State::handshaking && k.state <= State::closing) flush(slot);
  }
  dirty_.clear();
}

void Engine::flush(std::uint32_t slot) {
  if (tls_) {
    flush_tls(slot);
    return;
  }
  Conn& k = conns_[slot];
  if ((k.flags & f_send_in_flight) || k.staged_len == 0) return;
  const std::uint8_t sending = k.fill_half;
  k.flight_len = k.staged_len;
  k.flight_sent = 0;
  k.staged_len = 0;
  k.fill_half ^= 1;
  if (!ring_.send(slot, {half(slot, sending), k.flight_len}, tag(op_send, slot))) {
    if (!(k.flags & f_resolved)) resolve_oddity(slot, Oddity::no_sqe);
    teardown(slot);
    return;
  }
  k.flags |= f_send_in_flight;
  ++k.ops;
}

// wss://: the staging halves hold plaintext.  While no send is in flight,
// the half being sent (flight_len bytes, flight_sent of them sealed so far)
// is sealed into the connection's record buffer as far as it has room, then
// the filling half; one send takes all the ciphertext waiting (the TLS
// client's own output first: handshake flights, alerts, close_notify).
void Engine::flush_tls(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.flags & f_send_in_flight) return;
  for (;;) {
    if (k.flight_len == 0) {
      if (k.staged_len == 0) break;
      k.flight_len = k.staged_len;
      k.flight_sent = 0;
      k.staged_len = 0;
      k.fill_half ^= 1;
    }
    const std::uint8_t* sealing = half(slot, static_cast<std::uint8_t>(k.fill_half ^ 1));
    const std::uint32_t n = tls_->seal(slot, {sealing + k.flight_sent, k.flight_len - k.flight_sent});
    if (n == 0) break;  // not open yet, or the record buffer is full: after this send
    k.flight_sent += n;
    if (k.flight_sent == k.flight_len) k.flight_len = k.flight_sent = 0;
  }
  const std::span<const std::uint8_t> out = tls_->pending(slot);
  if (out.empty()) return;
  if (!ring_.send(slot, out, tag(op_send, slot))) {
    if (!(k.flags & f_resolved)) resolve_oddity(slot, Oddity::no_sqe);
    teardown(slot);
    return;
  }
  tls_->submitted(slot, static_cast<std::uint32_t>(out.size()));
  k.flags |= f_send_in_flight;
  ++k.ops;
}

// ---------------------------------------------------------------- wss://

void Engine::tls_handshake_done(std::uint32_t slot, bool tls13, bool resumed, std::uint64_t took_ns) {
  tls::TlsStats& st = stats_of(conns_[slot]).tls;
  ++st.handshakes[tls13 ? 1 : 0][resumed ? 1 : 0];
  (resumed ? st.resumed_us : st.full_us).record(took_ns / 1000);
  ++tls_handshakes_;
  if (resumed) ++tls_resumed_;
  mark_dirty(slot);  // the upgrade request, sealed behind our last handshake flight
}

void Engine::count_tls_failure(std::uint32_t slot, tls::Failure why, std::uint8_t alert, const std::string& detail) {
  const Conn& k = conns_[slot];
  tls::TlsStats& st = stats_of(k).tls;
  ++st.failures[static_cast<std::size_t>(why)];
  if (why == tls::Failure::alert) ++st.alerts[alert];
  if (k.id < st.first_failure_attempt) {
    st.first_failure_attempt = k.id;
    st.first_failure = detail;
  }
}

void Engine::tls_unfinished(std::uint32_t slot, tls::Failure why, const char* detail) {
  if (!tls_ || !tls_->handshaking(slot) || (conns_[slot].flags & f_resolved)) return;
  count_tls_failure(slot, why, 0, std::string("handshake: ") + detail);
}

void Engine::tls_failed(std::uint32_t slot, bool in_handshake, tls::Failure failure, std::uint8_t alert,
                        const std::string& detail) {
  Conn& k = conns_[slot];
  if (in_handshake) {
    count_tls_failure(slot, failure, alert, "handshake: " + detail);
  } else {
    tls::TlsStats& st = stats_of(k).tls;
    ++st.errors_after_handshake;
    if (k.id < st.first_failure_attempt) {
      st.first_failure_attempt = k.id;
      st.first_failure = "after the handshake: " + detail;
    }
  }
  // BoringSSL's alert, if it wrote one, goes before the connection does (the
  // teardown's cancel may still catch it: best effort).
  flush_tls(slot);
  if (!(k.flags & f_resolved)) {
    resolve(slot, Outcome::tls_failed);  // in the TLS handshake, or before the 101
    teardown(slot);
  } else {
    protocol_error(slot);  // an upgraded connection: a bad record or an alert from the server
  }
}

bool Engine::tls_plain(std::uint32_t slot, std::span<const std::uint8_t> bytes) {
  Conn& k = conns_[slot];
  switch (k.state) {
    case State::handshaking: handshake_bytes(slot, bytes); break;
    case State::open:
    case State::closing: ws_bytes(slot, bytes); break;
    default: return false;
  }
  return k.state >= State::handshaking && k.state <= State::closing;
}

void Engine::tls_peer_closed(std::uint32_t slot) {
  Conn& k = conns_[slot];
  ++stats_of(k).tls.close_notify_received;
  if (k.state < State::handshaking || k.state > State::closing) return;
  // What we still have to say (the echo of the server's close frame) is
  // sealed first, then our close_notify; EOF follows from the server.
  flush_tls(slot);
  tls_->close_notify(slot);
  flush_tls(slot);
}

// ---------------------------------------------------------------- teardown

void Engine::teardown(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state >= State::tearing_down || k.state == State::free) return;
  // A stalled subscriber the server has not ended (it would have been
  // counted by now) goes by our hand.
  if (stalled(slot)) fanout::end_stall(subs_[slot], false, stats_of(k).fanout);
  timer_remove(slot);
  set_open(slot, false);
  verify_done(slot, false);
  count_unanswered(slot);
  const bool connecting = k.state == State::connecting;
  k.state = State::tearing_down;
  if (connecting && k.ops > 0) {
    // The chain is still out (a connect waiting on SYN retries): cancel it by
    // its tag; its single CQE then arrives with -ECANCELED.
    if (ring_.cancel_tag(tag(op_connect, slot), tag(op_cancel, slot))) ++k.ops;
  } else {
    // Cancel by tag, never by descriptor: the kernel finds a user_data in
    // its cancel hash in O(1), but matches a descriptor by walking every
    // armed request of the ring (measured: at 15,000 connections per ring,
    // a mass close spent 92% of its CPU in io_cancel_req_match).
    if ((k.flags & f_recv_armed) && ring_.cancel_tag(tag(op_recv, slot), tag(op_cancel, slot))) ++k.ops;
    if ((k.flags & f_send_in_flight) && ring_.cancel_tag(tag(op_send, slot), tag(op_cancel, slot))) ++k.ops;
  }
  maybe_release(slot);
}

void Engine::maybe_release(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state != State::tearing_down || k.ops != 0) return;
  if (!ring_.close_direct(slot, tag(op_close, slot))) {
    std::fprintf(stderr, "ringgate-load: thread %u: no SQE to close slot %u; leaking it\n", s_.index, slot);
    return;
  }
  k.state = State::releasing;
  ++k.ops;
}

void Engine::release(std::uint32_t slot) {
  Conn& k = conns_[slot];
  assert(k.ops == 0);
  k.generation = (k.generation + 1) & ring::generation_mask;
  k.state = State::free;
  k.flags = 0;
  if (tls_) tls_->release(slot);
  free_slots_.push_back(slot);
}

// ---------------------------------------------------------------- timers
// Each list holds connections with the same timeout, so appending keeps it
// sorted by deadline and expiry only looks at the head.

void Engine::timer_add(std::uint32_t slot, TimerList list, std::uint64_t timeout_ms) {
  timers_.add(slot, list, rel_ms(), timeout_ms);
}

void Engine::timer_remove(std::uint32_t slot) { timers_.remove(slot); }

void Engine::run_timers() {
  const std::uint32_t now = rel_ms();
  for (std::uint32_t slot; (slot = timers_.pop_expired(TimerList::handshake, now)) != nil;) {
    tls_unfinished(slot, tls::Failure::timeout, "no handshake within --handshake-timeout");
    resolve(slot, Outcome::timed_out);
    teardown(slot);
  }
  for (std::uint32_t slot; (slot = timers_.pop_expired(TimerList::verify, now)) != nil;) {
    // No echo within --close-timeout: failed, and the message is given up
    // so that the close phase does not wait for it again.
    verify_done(slot, false);
    count_unanswered(slot);
  }
  for (std::uint32_t slot; (slot = timers_.pop_expired(TimerList::drain, now)) != nil;) {
    // A stalled subscriber drained and the server kept it: we close it.
    fanout::end_stall(subs_[slot], false, stats_of(conns_[slot]).fanout);
    if (conns_[slot].state == State::open) start_close(slot, 1000);
  }
  for (std::uint32_t slot; (slot = timers_.pop_expired(TimerList::closing, now)) != nil;) {
    if (conns_[slot].state == State::open && (conns_[slot].flags & f_draining)) {
      count_unanswered(slot);  // gave up waiting: close now
      start_close(slot, 1000);
      continue;
    }
    ++stats_of(conns_[slot]).close_timeouts;
    ++errors_;
    teardown(slot);
  }
}

// ---------------------------------------------------------------- handle

EngineHandle::EngineHandle(const EngineSetup& setup) : engine_(new Engine(setup)) {}
EngineHandle::~EngineHandle() { delete engine_; }
bool EngineHandle::start(std::string& error) { return engine_->start(error); }
void EngineHandle::run() { engine_->run(); }
const std::vector<StepStats>& EngineHandle::steps() const { return engine_->steps(); }
const std::vector<SourceCounts>& EngineHandle::by_source() const { return engine_->by_source(); }

}  // namespace rg::load
