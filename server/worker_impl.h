// The Worker class, shared by its rooms.  Private to server/: control/ and
// the tests see only run_worker() (server/worker.h).
//
// One worker is one thread, one io_uring, one listener and one slab of
// connection records.  Its code lives in rooms, one concern each; the
// sections below name the file that implements them:
//   loop.cpp        start-up, the loop, dispatch of completions by op, drain
//   acceptor.cpp    accepting, admission at accept time, refusals, the accept queue
//   proxy.cpp       the PROXY protocol header of balancer connections (proxy_protocol_from)
//   handshake.cpp   the HTTP upgrade: parse, admit, answer (101 or an error)
//   connection.cpp  a record's life: recv, linger, teardown, release
//   websocket.cpp   the upgraded connection: sessions, endpoints, the echo endpoint
//   outbound.cpp    every byte queued for a connection: sends, accounting, backpressure
//   timers.cpp      the timing wheel, heartbeats, stalls
//   pubsub.cpp      the pub/sub endpoint: commands, subscriptions, fan-out, deliveries
// The seams other work plugs into: byte_stream.h (plain TCP today, TLS
// next), Endpoint (conn.h), Outbound (outbound.h), and the mailboxes that
// delivery sources fill (delivery.h).
#pragma once

#include <sys/socket.h>

#include <absl/container/flat_hash_map.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/deadline_lists.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/timing_wheel.h"
#include "proto/http_upgrade.h"
#include "proto/jwt.h"
#include "proto/proxy_protocol.h"
#include "proto/pubsub.h"
#include "proto/segments.h"
#include "proto/ws_frame.h"
#include "proto/ws_session.h"
#include "ring/ring.h"
#include "server/byte_stream.h"
#include "proto/ws_wire.h"
#include "server/conn.h"
#include "server/interest.h"
#include "server/outbound.h"
#include "server/peer_address.h"
#include "server/subscriptions.h"
#include "server/tls_stream.h"
#include "server/worker.h"

namespace rg::server {

static_assert(op_mailbox == mailbox_wake_op, "publishers wake workers with this op");

namespace http = rg::proto::http;
namespace ws = rg::proto::ws;
namespace pubsub = rg::proto::pubsub;
namespace jwt = rg::proto::jwt;

class Worker final : public ws::MessageHandler, public ByteSink, public SubscriptionIndex::Watch {
 public:
  Worker(Shared& shared, std::uint32_t id, Listeners listeners);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  bool start(std::string& error);
  void run();

  // ws::MessageHandler: a complete message, routed by the connection's endpoint.
  void on_message(ws::Session& session, ws::Opcode opcode, std::span<const std::uint8_t> payload) override;
  // ByteSink: application bytes from the connection's byte stream.
  void on_bytes(std::uint32_t slot, std::span<const std::uint8_t> bytes) override;
  void on_stream_output(std::uint32_t slot) override;
  void on_stream_end(std::uint32_t slot, bool failed) override;
  // SubscriptionIndex::Watch: subscribers and user connections counted,
  // for the backplane (server/interest.h).
  void counted(Kind kind, std::string_view name, int delta) override { shared_.interest->note(kind, delta, name); }

 private:
  // ================================================================ loop.cpp
  // The loop wakes at least this often to run timers and notice shutdown.
  static constexpr std::uint32_t tick_ms = 100;
  // Width of a timing-wheel bucket: timers fire within one loop turn of their
  // deadline, and 4096 buckets of 10 ms cover 41 s per revolution (longer
  // timeouts such as pong_timeout wait a revolution or two in their bucket).
  static constexpr std::uint32_t wheel_tick_ms = 10;
  // CQEs handled per reap; more wait for the next turn of the loop.
  static constexpr std::size_t reap_batch = 512;
  static constexpr int reap_rounds_max = 8;  // batches per loop turn before timers run
  static constexpr std::uint16_t buffer_group = 0;

  ring::Tag tag(Op op, std::uint32_t slot) const { return {op, conns_[slot].generation, slot}; }
  std::uint32_t rel_now() const { return static_cast<std::uint32_t>(now_ms_ - epoch_ms_); }
  void dispatch(const ring::Completion& c);
  // An errno no handler expects: counted by op and errno, logged (rate-limited).
  void count_unexpected(std::uint8_t op, int err) noexcept;
  void begin_drain();
  // The stream a connection sits on: f_tls says TLS.  A constant refusal
  // sent before a TLS handshake began is a plaintext alert (f_send_raw).
  [[nodiscard]] ByteStream& stream_of(const Conn& k) noexcept {
    if (k.flags & f_tls) return tls_;
    return plain_;
  }

  Shared& shared_;
  const Config& config_;
  WorkerCounters& counters_;
  std::uint32_t id_;
  static constexpr std::uint32_t listeners_max = 2;
  static constexpr std::uint32_t listener_tls = 1;
  std::array<int, listeners_max> listen_fds_;  // [0] plain, [1] TLS; -1 when off
  ring::Ring ring_;
  ring::BufferRing buffers_;
  PlainStream plain_{ring_, *this};
  TlsStream tls_{ring_, *this, counters_.tls};
  bool tls_enabled_ = false;
  bool draining_ = false;
  std::uint64_t drain_deadline_ms_ = 0;
  std::uint64_t epoch_ms_ = 0;
  std::uint64_t now_ms_ = 0;
  base::log::RateLimited accept_log_;
  base::log::RateLimited conn_log_;
  base::log::RateLimited error_log_;
  std::vector<std::uint32_t> rearm_;              // connections whose multishot recv ended on ENOBUFS
  std::vector<std::uint32_t> stalled_teardowns_;  // teardowns that found no free SQE
  std::vector<std::uint32_t> stalled_retry_;      // the same, being retried this turn

  // ================================================================ acceptor.cpp
  void arm_accept();
  void on_accept(const ring::Completion& c);
  void on_accept_peer(const ring::Completion& c);
  void on_accept_error(int err);
  [[nodiscard]] bool accepting() const noexcept;
  void cancel_accepts();
  void pause_accepting();
  void arm_refusals();
  void on_accept_reserved(const ring::Completion& c);
  void claim_record(std::uint32_t slot);
  void begin_handshake(std::uint32_t slot);
  void admit(std::uint32_t slot, std::uint32_t ip_key, bool tls, bool from_balancer);
  void refill_tokens();
  void serve_accept_queue();
  [[nodiscard]] std::uint64_t wait_budget_us() const;

  // per_ip_limit and proxy_protocol_from: the peer's address is needed,
  // which a multishot accept cannot deliver safely (it writes every peer to
  // one buffer), so this many single accepts stay in flight, each with its
  // own address buffer.
  static constexpr std::uint32_t peer_accepts_max = 16;
  struct PeerAccept {
    sockaddr_storage addr;
    socklen_t addr_len;
    std::uint32_t listener;
    bool armed;
  };
  std::vector<PeerAccept> peer_accepts_;  // empty unless per_ip_limit or proxy_protocol_from is set
  std::vector<std::uint32_t> ip_keys_;    // per slot: PerIpCounts key, or none
  bool per_ip_ = false;
  // accept_rate: a token bucket (this worker's share) in front of a FIFO of
  // accepted connections that have not been read from yet.
  bool rate_limited_ = false;
  double tokens_ = 0;
  double tokens_per_ms_ = 0;
  double tokens_max_ = 0;
  std::uint64_t tokens_at_ms_ = 0;  // when tokens_ was last refilled
  std::uint32_t queue_depth_ = 0;
  std::array<bool, listeners_max> accept_armed_{};
  bool accept_paused_ = false;  // table full (ENFILE): resume when a slot frees
  bool accept_cancel_pending_ = false;  // a cancel of the accepts found no SQE: retried next turn
  // `reserved` slots of the table are kept for refusals: once the rest is in
  // use, the multishot accept is cancelled (before the kernel's table is
  // full, which would make it drop a connection with ENFILE) and single
  // accepts place newcomers into free slots only to answer them 503.
  std::uint32_t accept_limit_ = 0;     // live slots at which accepting pauses
  std::uint32_t refusal_accepts_ = 0;  // in flight
  std::uint32_t claim_cursor_ = 0;     // where the search for a free slot resumes
  std::uint32_t next_refusal_listener_ = 0;
  // Slots released while accepting is paused: a refusal reuses these before
  // it scans the slab, so a flood against a full table costs O(1) per refusal.
  static constexpr std::size_t recently_freed_max = 64;
  std::vector<std::uint32_t> recently_freed_;

  // ================================================================ proxy.cpp
  // Wire bytes of a connection still in its handshake: a balancer's PROXY
  // header first, a PROXY header from anyone else refused, the rest to the
  // byte stream.
  void on_handshake_wire(std::uint32_t slot, std::span<const std::uint8_t> wire);
  void handle_proxy_bytes(std::uint32_t slot, std::span<const std::uint8_t> wire);
  void refuse_proxy(std::uint32_t slot, Refusal why, std::string_view reason);
  [[nodiscard]] bool awaiting_proxy(std::uint32_t slot) const noexcept {
    return proxy_on_ && ((awaiting_proxy_[slot >> 6] >> (slot & 63)) & 1) != 0;
  }
  void set_awaiting_proxy(std::uint32_t slot, bool on) noexcept {
    if (!proxy_on_) return;  // no bits: nobody is a balancer
    const std::uint64_t bit = std::uint64_t{1} << (slot & 63);
    if (on) awaiting_proxy_[slot >> 6] |= bit;
    else awaiting_proxy_[slot >> 6] &= ~bit;
  }

  bool proxy_on_ = false;  // proxy_protocol_from is set
  // One bit per table slot: accepted from a balancer, its PROXY header not
  // yet read.  A bit, not a flag in the record: the record's flags are all
  // spoken for and the record stays 44 bytes.
  std::vector<std::uint64_t> awaiting_proxy_;
  proto::proxy::Parser proxy_scratch_;  // headers that arrive whole (nearly all)

  // ================================================================ handshake.cpp
  void build_constant_answers();
  void handle_handshake_bytes(std::uint32_t slot, std::span<const std::uint8_t> data);
  // Counted under `why`, or the reason the status implies.
  void answer_error(std::uint32_t slot, std::uint16_t status, std::string_view reason, std::uint32_t retry_after_s,
                    std::optional<Refusal> why = std::nullopt);
  void answer_const(std::uint32_t slot, Const what, Refusal why);
  [[nodiscard]] std::span<const std::uint8_t> const_answer(Const what) const noexcept;
  void refuse_capacity(std::uint32_t slot, const http::UpgradeParser& parser, std::string_view subprotocol,
                       Refusal why);
  void count_refusal(Refusal why) noexcept { counters_.refusals[static_cast<std::size_t>(why)].add(); }
  [[nodiscard]] std::uint32_t acquire_parser();

  base::Pool<ParseSlot> parsers_;
  base::SlotArray<Response> responses_;
  http::UpgradeParser scratch_;
  http::Limits http_limits_;
  http::UpgradePolicy policy_;
  std::string subprotocols_joined_;
  bool reject_with_close_ = false;  // reject = close
  // Constant answers, built once and sent from here by any connection.
  struct ConstAnswer {
    std::array<char, http::response_bytes_max> bytes{};
    std::size_t len = 0;
  };
  std::array<ConstAnswer, static_cast<std::size_t>(Const::idle_ws) + 1> consts_{};

  // ================================================================ connection.cpp
  void arm_recv(std::uint32_t slot);
  void on_recv(std::uint32_t slot, const ring::Completion& c);
  void start_linger(std::uint32_t slot);
  void teardown(std::uint32_t slot);
  void maybe_finish_teardown(std::uint32_t slot);
  void on_close(std::uint32_t slot, const ring::Completion& c);
  void release(std::uint32_t slot);
  void release_aux(Conn& k);

  Conn* conns_ = nullptr;
  std::size_t slab_bytes_ = 0;
  std::uint32_t slots_ = 0;

  // ================================================================ websocket.cpp
  void handle_ws_bytes(std::uint32_t slot, std::span<const std::uint8_t> data);
  bool attach_session(std::uint32_t slot);
  void release_session(Conn& k);
  bool answer_idle_close(std::uint32_t slot, std::span<const std::uint8_t> data);
  bool consume_idle_pongs(std::uint32_t slot, std::span<const std::uint8_t> data);
  void scan_for_close(std::uint32_t slot, std::span<const std::uint8_t> data);
  void end_after_close(std::uint32_t slot);
  void after_ws_progress(std::uint32_t slot);
  // Closes an open connection with `code`; `linger` bounds the wait for the
  // close to get out by close_timeout (slow consumers), else the peer's
  // close reply is awaited as usual.
  void close_with(std::uint32_t slot, std::uint16_t code, std::string_view reason, bool linger = true);
  void on_echo_message(std::uint32_t slot, ws::Session& session, ws::Opcode opcode,
                       std::span<const std::uint8_t> payload);
  [[nodiscard]] bool init_session(ws::Session& s) noexcept {
    return s.init(session_limits_, this, &segments_, {message_scratch_.get(), config_.max_message_size});
  }

  // Echo output and inbound reassembly live in pooled segments
  // (proto/segments.h): one pool for this worker's sessions, declared before
  // them so that it outlives them.  Freed segments are kept for reuse up to
  // segment_cache_bytes_max (or the buffered-bytes budget, if smaller);
  // beyond that they go back to the allocator.
  static constexpr std::uint64_t segment_cache_bytes_max = 64ull << 20;
  rg::proto::SegmentPool segments_;
  // max_message_size bytes, where a message spanning several segments is
  // made contiguous for on_message (allocated, never touched until used).
  std::unique_ptr<std::uint8_t[]> message_scratch_;
  base::Pool<ws::Session> sessions_;
  ws::SessionLimits session_limits_;
  std::uint32_t feeding_slot_ = nil;  // the connection whose bytes the session is parsing
  // Per session-pool entry, in one mapping sized at start-up (pages fault in
  // as sessions are first created): the outbound book of an echo connection,
  // and the gather list of its send in flight.
  static constexpr std::size_t iov_per_send_max = 16;
  struct SendVec {
    msghdr hdr;
    std::array<iovec, iov_per_send_max> iov;
  };
  base::SlotArray<Book> books_;        // indexed like the session pool
  base::SlotArray<SendVec> send_vecs_;  // indexed like the session pool

  // ================================================================ outbound.cpp
  void pump_send(std::uint32_t slot);
  void on_send(std::uint32_t slot, const ring::Completion& c);
  void account(std::uint32_t slot);
  // The book of a connection's outbound bytes: its subscriber's on the
  // pub/sub endpoint (delivery queue plus any session), else its session's.
  [[nodiscard]] Book* book_of(const Conn& k) noexcept;
  void after_backpressure(std::uint32_t slot);
  void on_backpressure_timeout(std::uint32_t slot);
  void close_slow_consumer(std::uint32_t slot);
  void pause_reading(std::uint32_t slot);
  void maybe_resume_reading(std::uint32_t slot);
  void publish_segment_gauges() noexcept;
  [[nodiscard]] std::uint64_t held_bytes() const noexcept {
    return outbound_.held(segments_.live_capped() * std::uint64_t{segments_.segment_size()});
  }

  Outbound outbound_;

  // ================================================================ timers.cpp
  void timer_add(std::uint32_t slot, TimerList list, std::uint64_t timeout_ms);
  void timer_remove(std::uint32_t slot);
  void run_timers();
  void on_timer(std::uint32_t slot, TimerList kind);
  void arm_heartbeat(std::uint32_t slot);
  void on_heartbeat(std::uint32_t slot);
  void note_progress(std::uint32_t slot);
  void note_inbound_progress(std::uint32_t slot, std::size_t bytes, bool message_completed);
  std::uint64_t progress_window_bytes_ = 0;  // min_message_rate x stall_timeout
  void on_stall(std::uint32_t slot);

  base::TimingWheel<Conn, TimerList> wheel_;
  base::DeadlineLists<Conn, TimerList, 7> queue_;  // only TimerList::queued
  bool heartbeats_ = false;  // ping_interval or idle_timeout set

  // ================================================================ pubsub.cpp
  // A frame queued to recipients by reference: a publication's (shared with
  // the other workers) or an answer of our own.  `refs` counts the queue
  // entries pointing at it, plus one while a fan-out is still walking.
  struct LocalMsg {
    Publication* pub;
    std::uint8_t* owned;  // an answer's frame (new[]), or null
    const std::uint8_t* data;
    std::uint32_t len;
    std::uint32_t refs;
  };
  // One entry of a subscriber's delivery queue (a singly linked FIFO).
  struct Delivery {
    std::uint32_t msg;
    std::uint32_t next;
  };
  // Bytes a queue entry is charged on top of its frame: the entry itself,
  // so the buffered-bytes budget bounds the queue's own memory too.
  static constexpr std::uint32_t delivery_overhead_bytes = sizeof(Delivery);
  // What the worker keeps per subscriber, indexed by subscriber id.
  struct SubState {
    std::uint32_t head = nil;      // delivery queue
    std::uint32_t tail = nil;
    std::uint32_t offset = 0;      // bytes of the head's frame already sent
    std::uint32_t count = 0;
    std::uint64_t bytes = 0;       // frames + overhead queued
    std::uint32_t patterns = nil;  // the token's channel patterns (auth = jwt), nil: any channel
    Book book;
  };
  // A publication taken from the mailbox, fanned out in FIFO order so that
  // one publisher's messages to a channel arrive in order.
  struct Fanout {
    Publication* pub;
    std::uint32_t msg;  // LocalMsg, once started
    bool started;
  };
  // Channel patterns of tokens, interned: connections with the same claims
  // (the usual case) share one entry.
  struct PatternSet {
    std::string key;
    std::vector<std::string> patterns;
    std::uint32_t refs = 0;
  };

  bool start_pubsub(std::string& error);
  void on_command(std::uint32_t slot, ws::Opcode opcode, std::span<const std::uint8_t> payload);
  bool check_pubsub_request(std::uint32_t slot, const http::UpgradeParser& parser);
  bool check_token(std::uint32_t slot, const http::UpgradeParser& parser);
  bool open_pubsub(std::uint32_t slot, const http::UpgradeParser& parser);
  void subscribe_at_connect(std::uint32_t slot);
  void subscribe(std::uint32_t slot, std::string_view channel);
  [[nodiscard]] bool allowed(std::uint32_t sub, std::string_view channel) const;
  void answer(std::uint32_t slot, std::span<const char> payload);
  void answer_command_error(std::uint32_t slot, pubsub::ErrorCode code, std::string_view message);
  bool enqueue(std::uint32_t slot, std::uint32_t msg, bool is_answer);
  [[nodiscard]] std::span<const std::uint8_t> delivery_bytes(const SubState& q) const noexcept;
  void delivery_sent(std::uint32_t slot, std::size_t bytes);
  void pop_delivery(SubState& q);
  void drop_deliveries(SubState& q, bool keep_head);
  void release_subscriber(std::uint32_t slot);
  [[nodiscard]] std::uint32_t new_msg();
  void unref_msg(std::uint32_t msg);
  void drain_mailbox();
  void run_fanout();
  void finish_fanout();
  void arm_mailbox_read();
  std::uint32_t intern_patterns(const jwt::Claims& claims);
  void release_patterns(std::uint32_t id);
  void publish_index_gauges();
  void release_publications() noexcept;

  bool pubsub_ = false;  // pubsub_path is not "off"
  SubscriptionIndex index_;
  // All sized at start-up: subscribers by the table, queue entries and
  // messages by max_deliveries.  Running out is a counted refusal.
  base::SlotArray<SubState> subs_;
  base::SlotArray<LocalMsg> msgs_;
  base::SlotArray<Delivery> deliveries_;
  std::vector<Fanout> fanouts_;  // a ring of mailbox_size entries
  std::size_t fanout_head_ = 0;
  std::size_t fanout_count_ = 0;
  Mailbox* mailbox_ = nullptr;
  std::array<std::uint8_t, 8> eventfd_value_{};
  bool mailbox_read_armed_ = false;
  std::unique_ptr<pubsub::CommandParser> commands_;
  std::unique_ptr<jwt::Verifier> verifier_;
  std::unique_ptr<pubsub::ChannelList> query_channels_;  // the channels= of the handshake being answered
  jwt::Result claims_;  // the token of the handshake being answered
  std::vector<PatternSet> pattern_sets_;  // reserved for every table slot at start-up
  std::vector<std::uint32_t> free_pattern_sets_;
  absl::flat_hash_map<std::string, std::uint32_t> pattern_ids_;
};

}  // namespace rg::server
