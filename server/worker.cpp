#include "server/worker.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <new>

#include "proto/http_upgrade.h"
#include "proto/jwt.h"
#include "proto/pubsub.h"
#include "proto/ws_frame.h"
#include "proto/ws_session.h"
#include "ring/deadline_lists.h"
#include "ring/timing_wheel.h"
#include "ring/ring.h"
#include "server/capacity_model.h"
#include "server/free_list.h"
#include "server/log.h"
#include "server/subscriptions.h"

namespace rg::server {

namespace {

namespace http = rg::proto::http;
namespace ws = rg::proto::ws;
namespace pubsub = rg::proto::pubsub;
namespace jwt = rg::proto::jwt;

constexpr std::uint32_t nil = UINT32_MAX;
// The loop wakes at least this often to run timers and notice shutdown; it is
// the resolution of every timeout.
constexpr std::uint32_t tick_ms = 100;
// Width of a timing-wheel bucket: timers fire within one loop turn of their
// deadline, and 4096 buckets of 10 ms cover 41 s per revolution (longer
// timeouts such as pong_timeout wait a revolution or two in their bucket).
constexpr std::uint32_t wheel_tick_ms = 10;
// CQEs handled per reap; more wait for the next turn of the loop.
constexpr std::size_t reap_batch = 512;
constexpr int reap_rounds_max = 8;  // batches per loop turn before timers run
constexpr std::uint16_t buffer_group = 0;

enum Op : std::uint8_t {
  op_accept = 1, op_recv, op_send, op_shutdown, op_cancel, op_close, op_accept_cancel,
  op_accept_reserved,  // a single accept into a reserved slot, to refuse explicitly
  op_accept_peer,      // a single accept that reports the peer's address (per_ip_limit)
  op_mailbox = mailbox_wake_op,  // a publisher woke us (MSG_RING), or the eventfd read completed
};

enum class State : std::uint8_t {
  free = 0,
  claimed,       // a refusal accept targets this slot
  queued,        // accepted, waiting for an accept_rate token; nothing read yet
  handshake,     // reading the upgrade request
  open,          // upgraded
  ws_closing,    // we sent close (shutdown): waiting for the peer's close
  lingering,     // final answer sent, write side shut: draining until EOF
  tearing_down,  // cancel submitted: waiting for in-flight ops to finish
  closing,       // close_direct submitted
};

enum Flag : std::uint16_t {
  f_recv_armed = 1 << 0,
  f_send_in_flight = 1 << 1,
  f_upgraded = 1 << 2,
  f_send_from_session = 1 << 3,  // else from the handshake slot or a constant
  f_send_const = 1 << 4,
  f_shutdown_sent = 1 << 5,
  f_rearm_queued = 1 << 6,
  f_aux_parser = 1 << 7,  // aux names a parser slot; otherwise a response slot
  f_close_after_send = 1 << 8,  // the answer is a close reply: tear down once it is out
  f_read_paused = 1 << 9,       // backpressured: recv cancelled until the buffer drains
  f_const_close_sent = 1 << 10, // a constant close frame went out: waiting for the peer's close
  f_ping_outstanding = 1 << 11, // a ping went out at ping_sent_ms and nothing has been received since
  f_send_delivery = 1 << 12,    // the send in flight is from the pub/sub delivery queue
};

// A connection has at most one timer.  On the timing wheel: handshake
// (handshake_timeout); closing (close_timeout); active (stall_timeout,
// re-armed on every bit of progress while a session is attached); heartbeat
// (an idle open connection's next ping, pong deadline or idle_timeout,
// whichever is first); backpressure (backpressure_timeout, while over the
// buffer threshold).  On a deadline list of its own: queued
// (accept_queue_timeout; one timeout for all means arrival order is deadline
// order, so the list is also the accept queue's FIFO).
enum class TimerList : std::uint8_t { none, handshake, closing, active, heartbeat, backpressure, queued };

enum class Const : std::uint8_t {
  none, busy_http, shutdown_http, busy_ws, shutdown_ws, per_ip_http, rate_http, ping_ws, idle_ws,
};

// The record every connection costs, idle or not.  It is the whole per
// connection user-space footprint while idle: the parse state and the wslay
// session attach from pools only while there is work in flight.
struct Conn {
  std::uint32_t generation;   // bumped on release; travels in user_data
  std::uint32_t timer_prev;   // intrusive timer list links (slot indices)
  std::uint32_t timer_next;
  std::uint32_t deadline_ms;  // worker-relative, compared wrap-safe
  std::uint32_t aux;          // parser slot while parsing, then response slot; or nil
  std::uint32_t session;      // pool index or nil
  std::uint32_t last_rx_ms;   // worker-relative: when bytes last arrived (open connections)
  std::uint32_t ping_sent_ms; // worker-relative: the first unanswered ping (with f_ping_outstanding)
  std::uint32_t sub;          // pub/sub subscriber id (SubscriptionIndex), or nil on other endpoints
  State state;
  TimerList timer_list;
  Const pending_const;
  Const sent_const;           // the constant whose send is in flight (pending_const may change meanwhile)
  std::uint16_t flags;
  std::uint16_t ops;          // operations in flight (multishot recv counts once)
};
static_assert(sizeof(Conn) == 44, "the connection record is the per-connection memory budget: keep it 44 bytes");
static_assert(sizeof(Conn) == capacity::record_bytes, "the capacity model plans with this record's size");

// Parse state for a request that did not arrive in one piece.  Requests that
// do (nearly all) are parsed in the worker's scratch parser and never hold one.
struct ParseSlot {
  explicit ParseSlot(http::Limits limits) : parser(limits) {}
  http::UpgradeParser parser;
};

// An HTTP answer (101 or an error) waiting for its send to complete.
struct Response {
  std::array<char, http::response_bytes_max> bytes;
  std::uint16_t len;
  std::uint16_t sent;
};

std::uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

// Objects created on first use up to a cap fixed at start-up, then reused.
template <typename T>
class Pool {
 public:
  void init(std::uint32_t cap) {
    cap_ = cap;
    items_.reserve(cap);
    free_.reserve(cap);
  }
  // Returns an index, or nil when the cap is reached or memory is short.
  template <typename Make>
  std::uint32_t acquire(Make&& make) {
    if (!free_.empty()) {
      const std::uint32_t i = free_.back();
      free_.pop_back();
      return i;
    }
    if (items_.size() >= cap_) return nil;
    T* t = make();
    if (!t) return nil;
    items_.emplace_back(t);
    return static_cast<std::uint32_t>(items_.size() - 1);
  }
  void release(std::uint32_t i) { free_.push_back(i); }
  T& operator[](std::uint32_t i) { return *items_[i]; }
  [[nodiscard]] std::size_t created() const { return items_.size(); }

 private:
  std::uint32_t cap_ = 0;
  std::vector<std::unique_ptr<T>> items_;
  std::vector<std::uint32_t> free_;
};

// A fixed array allocated (and faulted in) at start-up, with a free list.
template <typename T>
class FixedPool {
 public:
  FixedPool() = default;
  FixedPool(const FixedPool&) = delete;
  FixedPool& operator=(const FixedPool&) = delete;
  ~FixedPool() {
    if (items_) munmap(items_, bytes_);
  }
  bool init(std::uint32_t count) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_ = std::size_t{count} * sizeof(T);
    void* m = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) return false;
    items_ = static_cast<T*>(m);
    free_.reserve(count);
    for (std::uint32_t i = count; i > 0; --i) free_.push_back(i - 1);
    return true;
  }
  std::uint32_t acquire() {
    if (free_.empty()) return nil;
    const std::uint32_t i = free_.back();
    free_.pop_back();
    return i;
  }
  void release(std::uint32_t i) { free_.push_back(i); }
  T& operator[](std::uint32_t i) { return items_[i]; }

 private:
  T* items_ = nullptr;
  std::size_t bytes_ = 0;
  std::vector<std::uint32_t> free_;
};

// Whether `data` starts with one complete, well-formed client pong (what
// idle connections send back to our pings).
bool is_idle_pong(std::span<const std::uint8_t> data) {
  if (data.empty()) return false;
  const ws::DecodeResult d = ws::decode_header(data);
  const ws::FrameHeader& h = d.header;
  return d.status == ws::DecodeStatus::ok && h.opcode == static_cast<std::uint8_t>(ws::Opcode::pong) && h.fin &&
         h.masked && h.rsv == 0 && h.payload_len <= ws::control_payload_max &&
         h.header_len + h.payload_len <= data.size();
}

class Worker final : public ws::MessageHandler {
 public:
  Worker(Shared& shared, std::uint32_t id, int listen_fd)
      : shared_(shared), config_(shared.config), counters_(*shared.counters[id]), id_(id), listen_fd_(listen_fd) {}
  ~Worker() {
    // Publishers stop waking this ring before its fd goes away.
    if (mailbox_) mailbox_->ring_fd.store(-1);
    // The kernel may still hold sends and recvs that point into the slab,
    // pools and buffers (after a drain timeout): end the ring first.
    ring_.exit();
    if (conns_) munmap(conns_, slab_bytes_);
    // Publications this worker still holds: in its mailbox, waiting for
    // fan-out, or queued to connections that never drained.
    if (mailbox_) {
      while (Publication* p = mailbox_->pop()) {
        p->counted(0);
        p->unref();
      }
    }
    for (std::size_t i = 0; i < fanout_count_; ++i) {
      const Fanout& f = fanouts_[(fanout_head_ + i) % fanouts_.size()];
      if (!f.started) f.pub->unref();
    }
    for (LocalMsg& m : msgs_)
      if (m.refs > 0 && m.pub) m.pub->unref();
  }

  bool start(std::string& error);
  void run();

  // ws::MessageHandler: the echo endpoint.
  void on_message(ws::Session& session, ws::Opcode opcode, std::span<const std::uint8_t> payload) override {
    counters_.messages_in_total.fetch_add(1, std::memory_order_relaxed);
    assert(feeding_slot_ != nil && conns_[feeding_slot_].session != nil);
    if (conns_[feeding_slot_].sub != nil) {
      on_command(feeding_slot_, opcode, payload);
      return;
    }
    Book& b = books_[conns_[feeding_slot_].session];
    // ws framing adds at most 10 bytes (server frames are unmasked).  What
    // the segments hold counts when it is more than the bytes in them (many
    // connections with a short message each).
    const std::uint64_t held =
        std::max<std::uint64_t>(buffered_bytes_, segments_.live_capped() * std::uint64_t{segments_.segment_size()});
    const bool over_budget = held + payload.size() + 10 > buffered_budget_;
    if (b.backpressured || over_budget) {
      if (over_budget) counters_.buffer_budget_hits_total.fetch_add(1, std::memory_order_relaxed);
      if (drop_slow_consumers_) {
        counters_.slow_consumer_drops_total.fetch_add(1, std::memory_order_relaxed);
      } else if (!b.slow_close_sent) {
        b.slow_close_sent = true;
        counters_.slow_consumer_closes_total.fetch_add(1, std::memory_order_relaxed);
        session.queue_close(static_cast<std::uint16_t>(config_.slow_consumer_close_code), "slow consumer");
      }
      return;
    }
    session.queue_message(opcode, payload);
    account(feeding_slot_);  // may start backpressure before the next message in this read
  }

 private:
  // ------------------------------------------------------------ plumbing
  ring::Tag tag(Op op, std::uint32_t slot) const { return {op, conns_[slot].generation, slot}; }
  std::uint32_t rel_now() const { return static_cast<std::uint32_t>(now_ms_ - epoch_ms_); }
  void dispatch(const ring::Completion& c);
  void arm_accept();
  void arm_recv(std::uint32_t slot);

  // ------------------------------------------------------------ events
  void on_accept(const ring::Completion& c);
  void on_recv(std::uint32_t slot, const ring::Completion& c);
  void on_send(std::uint32_t slot, const ring::Completion& c);
  void on_close(std::uint32_t slot, const ring::Completion& c);

  // ------------------------------------------------------------ connection
  void claim_record(std::uint32_t slot);
  void begin_handshake(std::uint32_t slot);
  void admit(std::uint32_t slot, std::uint32_t ip_key);
  void count_refusal(Refusal why) noexcept;
  void refill_tokens();
  void serve_accept_queue();
  std::uint64_t wait_budget_us() const;
  void handle_handshake_bytes(std::uint32_t slot, std::span<const std::uint8_t> data);
  void handle_ws_bytes(std::uint32_t slot, std::span<const std::uint8_t> data);
  void answer_error(std::uint32_t slot, std::uint16_t status, std::string_view reason, std::uint32_t retry_after_s);
  void answer_const(std::uint32_t slot, Const what, Refusal why);
  [[nodiscard]] std::span<const std::uint8_t> const_answer(Const what) const noexcept;
  void refuse_capacity(std::uint32_t slot, const http::UpgradeParser& parser, std::string_view subprotocol,
                       Refusal why);
  bool attach_session(std::uint32_t slot);
  bool answer_idle_close(std::uint32_t slot, std::span<const std::uint8_t> data);
  void after_ws_progress(std::uint32_t slot);
  void pump_send(std::uint32_t slot);
  void start_linger(std::uint32_t slot);
  void teardown(std::uint32_t slot);
  void maybe_finish_teardown(std::uint32_t slot);
  void pause_reading(std::uint32_t slot);
  void maybe_resume_reading(std::uint32_t slot);
  void note_progress(std::uint32_t slot);
  void on_stall(std::uint32_t slot);
  void scan_for_close(std::uint32_t slot, std::span<const std::uint8_t> data);
  void release(std::uint32_t slot);
  void release_aux(Conn& k);
  std::uint32_t acquire_parser();
  void release_session(Conn& k);

  // ------------------------------------------------------------ timers
  void timer_add(std::uint32_t slot, TimerList list, std::uint64_t timeout_ms);
  void timer_remove(std::uint32_t slot);
  void run_timers();
  void on_timer(std::uint32_t slot, TimerList kind);
  void arm_heartbeat(std::uint32_t slot);
  void on_heartbeat(std::uint32_t slot);
  bool consume_idle_pongs(std::uint32_t slot, std::span<const std::uint8_t> data);
  bool heartbeats_ = false;  // ping_interval or idle_timeout set
  void begin_drain();

  Shared& shared_;
  const Config& config_;
  WorkerCounters& counters_;
  std::uint32_t id_;
  int listen_fd_;

  ring::Ring ring_;
  ring::BufferRing buffers_;
  Conn* conns_ = nullptr;
  std::size_t slab_bytes_ = 0;
  std::uint32_t slots_ = 0;
  Pool<ParseSlot> parsers_;
  FixedPool<Response> responses_;
  http::UpgradeParser scratch_;
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
  // A session's output goes out in one send of up to this many segments
  // (and send_chunk_size bytes); the iovecs must stay put until the send
  // completes, so each session entry has its own.
  static constexpr std::size_t iov_per_send_max = 16;
  struct SendVec {
    msghdr hdr;
    std::array<iovec, iov_per_send_max> iov;
  };
  std::vector<SendVec> send_vecs_;  // indexed like the session pool
  [[nodiscard]] bool init_session(ws::Session& s) noexcept {
    return s.init(session_limits_, this, &segments_, {message_scratch_.get(), config_.max_message_size});
  }
  void publish_segment_gauges() noexcept {
    counters_.segment_bytes.store(segments_.memory_bytes(), std::memory_order_relaxed);
    counters_.segments_live.store(segments_.live(), std::memory_order_relaxed);
    counters_.segment_allocations_total.store(segments_.allocations_total(), std::memory_order_relaxed);
  }
  Pool<ws::Session> sessions_;
  http::Limits http_limits_;
  http::UpgradePolicy policy_;
  std::string subprotocols_joined_;
  ws::SessionLimits session_limits_;

  // Constant answers, built once and sent from here by any connection.
  std::array<char, http::response_bytes_max> busy_http_{};
  std::size_t busy_http_len_ = 0;
  std::array<char, http::response_bytes_max> shutdown_http_{};
  std::size_t shutdown_http_len_ = 0;
  std::array<std::uint8_t, 64> busy_ws_{};
  std::size_t busy_ws_len_ = 0;
  std::array<std::uint8_t, 64> shutdown_ws_{};
  std::size_t shutdown_ws_len_ = 0;
  std::array<std::uint8_t, 64> idle_ws_{};
  std::size_t idle_ws_len_ = 0;
  static constexpr std::array<std::uint8_t, 2> ping_ws_{0x89, 0x00};  // FIN + ping, empty, unmasked
  std::array<char, http::response_bytes_max> per_ip_http_{};
  std::size_t per_ip_http_len_ = 0;
  std::array<char, http::response_bytes_max> rate_http_{};
  std::size_t rate_http_len_ = 0;

  ring::TimingWheel<Conn, TimerList> wheel_;
  ring::DeadlineLists<Conn, TimerList, 7> queue_;  // only TimerList::queued

  // Outbound accounting for connections with a session attached (only they
  // buffer anything), indexed like the session pool: what was last added to
  // this worker's totals, and the backpressure state.
  struct Book {
    std::uint64_t bytes = 0;
    std::uint32_t messages = 0;
    std::uint32_t backpressure_since_ms = 0;
    bool backpressured = false;
    bool slow_close_sent = false;
  };
  std::vector<Book> books_;  // echo connections: indexed like the session pool
  std::uint64_t buffered_bytes_ = 0;      // this worker's total (mirrors counters_.buffered_bytes)
  std::uint64_t buffered_budget_ = 0;     // this worker's share of max_buffered_bytes
  std::uint64_t buffered_hw_ = 0;
  std::uint64_t messages_pending_ = 0;
  std::uint64_t backpressured_ = 0;
  std::uint32_t feeding_slot_ = nil;      // the connection whose bytes the session is parsing
  // Configuration words read on the data path, parsed once at start.
  bool drop_slow_consumers_ = false;      // slow_consumer_policy = drop
  bool reject_with_close_ = false;        // reject = close
  void account(std::uint32_t slot);
  // The book of a connection's outbound bytes: its subscriber's on the
  // pub/sub endpoint (delivery queue plus any session), else its session's.
  Book* book_of(const Conn& k) noexcept;
  void end_backpressure(std::uint32_t slot, Book& b);
  void on_backpressure_timeout(std::uint32_t slot);
  void close_slow_consumer(std::uint32_t slot);

  // per_ip_limit: the peer's address is needed, which a multishot accept
  // cannot deliver safely (it writes every peer to one buffer), so this many
  // single accepts stay in flight, each with its own address buffer.
  static constexpr std::uint32_t peer_accepts_max = 16;
  struct PeerAccept {
    sockaddr_storage addr;
    socklen_t addr_len;
    bool armed;
  };
  std::vector<PeerAccept> peer_accepts_;  // empty unless per_ip_limit is set
  std::vector<std::uint32_t> ip_keys_;    // per slot: PerIpCounts key, or none
  bool per_ip_ = false;
  void on_accept_peer(const ring::Completion& c);
  void on_accept_error(int err);
  [[nodiscard]] bool accepting() const noexcept;

  // accept_rate: a token bucket (this worker's share) in front of a FIFO of
  // accepted connections that have not been read from yet.
  bool rate_limited_ = false;
  double tokens_ = 0;
  double tokens_per_ms_ = 0;
  double tokens_max_ = 0;
  std::uint64_t tokens_at_ms_ = 0;  // when tokens_ was last refilled
  std::uint32_t queue_depth_ = 0;

  std::vector<std::uint32_t> rearm_;  // connections whose multishot recv ended on ENOBUFS
  std::vector<std::uint32_t> stalled_teardowns_;  // teardowns that found no free SQE
  bool accept_armed_ = false;
  bool accept_paused_ = false;  // table full (ENFILE): resume when a slot frees
  // `reserved` slots of the table are kept for refusals: once the rest is in
  // use, the multishot accept is cancelled (before the kernel's table is
  // full, which would make it drop a connection with ENFILE) and single
  // accepts place newcomers into free slots only to answer them 503.
  std::uint32_t accept_limit_ = 0;     // live slots at which accepting pauses
  std::uint32_t refusal_accepts_ = 0;  // in flight
  std::uint32_t claim_cursor_ = 0;     // where the search for a free slot resumes
  // Slots released while accepting is paused: a refusal reuses these before
  // it scans the slab, so a flood against a full table costs O(1) per refusal.
  static constexpr std::size_t recently_freed_max = 64;
  std::vector<std::uint32_t> recently_freed_;
  void pause_accepting();
  void arm_refusals();
  void on_accept_reserved(const ring::Completion& c);
  // ------------------------------------------------------------ pub/sub
  // A frame queued to recipients by reference: a publication's (shared with
  // the other workers) or an answer of our own.  `refs` counts the queue
  // entries pointing at it, plus one while a fan-out is still walking.
  struct LocalMsg {
    Publication* pub = nullptr;
    std::unique_ptr<std::uint8_t[]> owned;
    const std::uint8_t* data = nullptr;
    std::uint32_t len = 0;
    std::uint32_t refs = 0;
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

  void on_command(std::uint32_t slot, ws::Opcode opcode, std::span<const std::uint8_t> payload);
  bool check_pubsub_request(std::uint32_t slot, const http::UpgradeParser& parser);
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
  void close_with(std::uint32_t slot, std::uint16_t code, std::string_view reason);
  std::uint32_t new_msg();
  void unref_msg(std::uint32_t msg);
  void drain_mailbox();
  void run_fanout();
  void finish_fanout();
  void arm_mailbox_read();
  std::uint32_t intern_patterns(const jwt::Claims& claims);
  void release_patterns(std::uint32_t id);
  void publish_index_gauges();

  bool pubsub_ = false;  // pubsub_path is not "off"
  SubscriptionIndex index_;
  std::vector<SubState> subs_;
  std::vector<LocalMsg> msgs_;
  std::vector<std::uint32_t> free_msgs_;
  std::vector<Delivery> deliveries_;
  std::vector<std::uint32_t> free_deliveries_;
  std::vector<Fanout> fanouts_;   // a ring of mailbox_size entries
  std::size_t fanout_head_ = 0;
  std::size_t fanout_count_ = 0;
  Mailbox* mailbox_ = nullptr;
  std::array<std::uint8_t, 8> eventfd_value_{};
  bool mailbox_read_armed_ = false;
  std::unique_ptr<pubsub::CommandParser> commands_;
  std::unique_ptr<jwt::Verifier> verifier_;
  std::unique_ptr<pubsub::ChannelList> query_channels_;  // the channels= of the handshake being answered
  jwt::Result claims_;  // the token of the handshake being answered
  std::vector<PatternSet> pattern_sets_;
  std::vector<std::uint32_t> free_pattern_sets_;
  absl::flat_hash_map<std::string, std::uint32_t> pattern_ids_;

  bool draining_ = false;
  std::uint64_t drain_deadline_ms_ = 0;
  std::uint64_t epoch_ms_ = 0;
  std::uint64_t now_ms_ = 0;
  log::RateLimited accept_log_;
  log::RateLimited conn_log_;
};

bool Worker::start(std::string& error) {
  epoch_ms_ = now_ms_ = monotonic_ms();
  counters_.loop_heartbeat_ms.store(now_ms_, std::memory_order_relaxed);
  ring::RingParams params;
  if (ring_.init(params, error) != 0) return false;
  if (id_ == 0 && !ring_.features().defer_taskrun)
    RG_LOG(warn, "kernel lacks IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+): running without them");

  slots_ = shared_.table_slots_per_worker;
  counters_.table_slots.store(slots_, std::memory_order_relaxed);
  if (const int err = ring_.register_direct_table(slots_); err != 0) {
    error = absl::StrFormat("registering %u direct-descriptor slots: %s (the kernel allows at most RLIMIT_NOFILE per ring)",
                            slots_, std::strerror(err));
    return false;
  }
  // The slab: one record per table slot, so a slot index is a connection id.
  // Anonymous pages are zero, which is State::free.
  accept_limit_ = slots_ - shared_.reserved_slots_per_worker;
  recently_freed_.reserve(recently_freed_max);
  slab_bytes_ = std::size_t{slots_} * sizeof(Conn);
  // The slab is faulted in now: memory sized at start-up is paid at start-up,
  // so a connection costs no page faults and RSS stays flat as they arrive.
  void* m = mmap(nullptr, slab_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) {
    error = absl::StrFormat("mapping the connection slab (%u records): %s", slots_, std::strerror(errno));
    return false;
  }
  conns_ = static_cast<Conn*>(m);
  wheel_.bind(conns_, wheel_tick_ms, rel_now());
  queue_.bind(conns_);
  heartbeats_ = config_.ping_interval_ms > 0 || config_.idle_timeout_ms > 0;

  if (buffers_.init(ring_, buffer_group, config_.recv_buffer_count, config_.recv_buffer_size, error) != 0) return false;

  parsers_.init(config_.max_pending_handshakes);
  if (!responses_.init(config_.max_pending_handshakes)) {
    error = absl::StrFormat("mapping %u response slots: %s", config_.max_pending_handshakes, std::strerror(errno));
    return false;
  }
  sessions_.init(config_.max_active_sessions);
  rearm_.reserve(slots_);
  http_limits_ = {config_.max_request_line, config_.max_header_bytes, config_.max_headers};
  for (const auto& p : config_.subprotocols) subprotocols_joined_ += (subprotocols_joined_.empty() ? "" : ",") + p;
  pubsub_ = config_.pubsub_enabled();
  policy_ = {config_.echo_path, subprotocols_joined_, pubsub_ ? std::string_view(config_.pubsub_path) : ""};
  if (pubsub_) {
    index_.init(slots_, config_.max_subscriptions);
    fanouts_.assign(config_.mailbox_size, Fanout{});
    mailbox_ = shared_.mailboxes[id_].get();
    mailbox_->ring_fd.store(ring_.fd());
    commands_ = std::make_unique<pubsub::CommandParser>();
    query_channels_ = std::make_unique<pubsub::ChannelList>();
    if (!commands_->ready()) {
      error = "allocating the JSON command parser";
      return false;
    }
    if (config_.auth_jwt()) {
      verifier_ = std::make_unique<jwt::Verifier>(std::span<const std::uint8_t>(
          reinterpret_cast<const std::uint8_t*>(shared_.jwt_key.data()), shared_.jwt_key.size()));
      if (!verifier_->ready()) {
        error = "setting up the JWT verifier (jwt_secret_file must hold 1..256 bytes)";
        return false;
      }
    }
    arm_mailbox_read();
  }
  session_limits_ = {config_.max_message_size, config_.max_frame_size, config_.send_chunk_size};
  books_.reserve(config_.max_active_sessions);  // address space only until sessions are created
  send_vecs_.reserve(config_.max_active_sessions);
  buffered_budget_ = shared_.max_buffered_bytes / shared_.counters.size();
  // Outbound data in segments never exceeds this worker's share of the
  // budget (on_message refuses before it; the cap is the backstop).
  segments_.init(config_.segment_size,
                 static_cast<std::uint32_t>(std::min(segment_cache_bytes_max, buffered_budget_) / config_.segment_size),
                 std::max<std::uint64_t>(buffered_budget_ / config_.segment_size, 1));
  message_scratch_.reset(new (std::nothrow) std::uint8_t[config_.max_message_size]);
  if (!message_scratch_) {
    error = "allocating the message scratch buffer (max_message_size)";
    return false;
  }
  drop_slow_consumers_ = config_.slow_consumer_policy == "drop";
  reject_with_close_ = config_.reject == "close";

  busy_http_len_ = http::build_refusal(busy_http_, 503, "Server at maximum connection capacity",
                                       config_.retry_after_s);
  per_ip_http_len_ = http::build_refusal(per_ip_http_, 429, "Too many connections from your address (per_ip_limit)",
                                         config_.retry_after_s);
  rate_http_len_ = http::build_refusal(
      rate_http_, 503, "Server is accepting new connections at its configured rate limit (accept_rate)",
      config_.retry_after_s);
  per_ip_ = shared_.per_ip.enabled();
  if (per_ip_) {
    peer_accepts_.assign(peer_accepts_max, PeerAccept{});
    ip_keys_.assign(slots_, PerIpCounts::none);
  }
  if (config_.accept_rate > 0) {
    // This worker's share; the kernel spreads connections over the
    // SO_REUSEPORT listeners evenly enough that equal shares add up.
    const double workers = static_cast<double>(shared_.counters.size());
    const double burst = config_.accept_burst ? config_.accept_burst : config_.accept_rate;
    rate_limited_ = true;
    tokens_per_ms_ = config_.accept_rate / workers / 1000.0;
    tokens_max_ = std::max(1.0, burst / workers);
    tokens_ = tokens_max_;
    tokens_at_ms_ = now_ms_;
  }
  shutdown_http_len_ = http::build_error(shutdown_http_, 503, "server shutting down", config_.retry_after_s);
  const auto close_frame = [](std::array<std::uint8_t, 64>& out, std::uint16_t code, std::string_view reason) {
    std::array<std::uint8_t, ws::header_size_max> header{};
    const std::size_t hl = ws::encode_header(header, ws::Opcode::close, true, 2 + reason.size(), nullptr);
    std::memcpy(out.data(), header.data(), hl);
    out[hl] = static_cast<std::uint8_t>(code >> 8);
    out[hl + 1] = static_cast<std::uint8_t>(code & 0xFF);
    std::memcpy(out.data() + hl + 2, reason.data(), reason.size());
    return hl + 2 + reason.size();
  };
  busy_ws_len_ = close_frame(busy_ws_, 1013, "server busy: too many active sessions");
  shutdown_ws_len_ = close_frame(shutdown_ws_, 1001, "server shutting down");
  idle_ws_len_ = close_frame(idle_ws_, 1000, "idle timeout");
  arm_accept();
  return true;
}

// Arms whatever accepts are missing: the multishot one, or with
// per_ip_limit each idle single accept.  Cheap enough to call every turn.
void Worker::arm_accept() {
  if (draining_ || accept_paused_) return;
  if (!per_ip_) {
    if (!accept_armed_ && ring_.accept_multishot_direct(listen_fd_, {op_accept, 0, 0})) accept_armed_ = true;
    return;
  }
  for (std::uint32_t i = 0; i < peer_accepts_.size(); ++i) {
    PeerAccept& a = peer_accepts_[i];
    if (a.armed) continue;
    if (!ring_.accept_direct_with_peer(listen_fd_, &a.addr, &a.addr_len, {op_accept_peer, 0, i})) return;
    a.armed = true;
  }
}

bool Worker::accepting() const noexcept {
  if (accept_armed_) return true;
  for (const PeerAccept& a : peer_accepts_)
    if (a.armed) return true;
  return false;
}

void Worker::arm_recv(std::uint32_t slot) {
  Conn& k = conns_[slot];
  assert(!(k.flags & f_recv_armed));
  if (!ring_.recv_multishot(slot, buffer_group, tag(op_recv, slot))) {
    teardown(slot);
    return;
  }
  k.flags |= f_recv_armed;
  ++k.ops;
}

void Worker::run() {
  std::array<ring::Completion, reap_batch> cqes;
  for (;;) {
    if (const int err = ring_.submit_and_wait_us(wait_budget_us()); err != 0) {
      RG_LOG(error, "worker %u: io_uring wait failed: %s", id_, std::strerror(err));
    }
    now_ms_ = monotonic_ms();
    counters_.loop_heartbeat_ms.store(now_ms_, std::memory_order_relaxed);
    ring_.drain(cqes, reap_rounds_max, [this](const ring::Completion& c) { dispatch(c); });
    buffers_.publish();
    // Multishot recvs that ended because the buffer ring ran dry resume now
    // that this turn's buffers are back.
    for (const std::uint32_t slot : rearm_) {
      Conn& k = conns_[slot];
      k.flags &= static_cast<std::uint16_t>(~f_rearm_queued);
      if ((k.state == State::handshake || k.state == State::open || k.state == State::ws_closing ||
           k.state == State::lingering) &&
          !(k.flags & f_recv_armed))
        arm_recv(slot);
    }
    rearm_.clear();
    // Teardowns that could not get an SQE try again (rare: the SQ is
    // submitted whenever it fills).
    if (!stalled_teardowns_.empty()) {
      std::vector<std::uint32_t> retry;
      retry.swap(stalled_teardowns_);
      for (const std::uint32_t slot : retry) {
        if (conns_[slot].state == State::tearing_down) {
          conns_[slot].state = State::lingering;  // let teardown() run again
          teardown(slot);
        }
      }
    }
    arm_accept();
    if (rate_limited_) serve_accept_queue();
    if (pubsub_) {
      drain_mailbox();
      run_fanout();
      arm_mailbox_read();
    }
    run_timers();
    if (accept_paused_ && !draining_ && counters_.live_slots.load(std::memory_order_relaxed) < accept_limit_) {
      accept_paused_ = false;
      arm_accept();
    }
    if (!draining_ && shared_.stopping.load(std::memory_order_relaxed)) begin_drain();
    if (draining_) {
      const std::uint64_t live = counters_.live_slots.load(std::memory_order_relaxed);
      if ((live == 0 && !accepting()) || now_ms_ >= drain_deadline_ms_) {
        if (live > 0) RG_LOG(warn, "worker %u: drain timeout with %u connections still open", id_, live);
        RG_LOG(info, "worker %u: stopped; pools high-water: %u sessions, %u parse slots", id_, sessions_.created(),
               parsers_.created());
        break;
      }
    }
  }
}

void Worker::dispatch(const ring::Completion& c) {
  const Op op = static_cast<Op>(c.tag.op);
  if (op == op_accept) {
    on_accept(c);
    return;
  }
  if (op == op_accept_cancel) return;
  if (op == op_mailbox) {
    // The mailbox is drained every loop turn; this completion only ended
    // the wait.  An eventfd read is re-armed there too.
    if (c.tag.index == 1) mailbox_read_armed_ = false;
    return;
  }
  if (op == op_accept_reserved) {
    on_accept_reserved(c);
    return;
  }
  if (op == op_accept_peer) {
    on_accept_peer(c);
    return;
  }
  const std::uint32_t slot = c.tag.index;
  assert(slot < slots_);
  Conn& k = conns_[slot];
  if ((k.generation & ring::generation_mask) != c.tag.generation || k.state == State::free) {
    // A completion for a connection that is gone; its buffer still goes back.
    if (c.has_buffer()) buffers_.recycle(c.buffer_id());
    return;
  }
  switch (op) {
    case op_recv: on_recv(slot, c); break;
    case op_send: on_send(slot, c); break;
    case op_shutdown:
      --k.ops;
      maybe_finish_teardown(slot);
      break;
    case op_cancel:
      --k.ops;
      maybe_finish_teardown(slot);
      break;
    case op_close: on_close(slot, c); break;
    default: assert(false && "unknown op"); break;
  }
}

void Worker::on_accept(const ring::Completion& c) {
  if (!c.more()) accept_armed_ = false;
  if (c.ok()) {
    counters_.accepted_total.fetch_add(1, std::memory_order_relaxed);
    admit(static_cast<std::uint32_t>(c.res), PerIpCounts::none);
    if (counters_.live_slots.load(std::memory_order_relaxed) >= accept_limit_) pause_accepting();
  } else {
    on_accept_error(c.error());
  }
  arm_accept();
}

void Worker::on_accept_peer(const ring::Completion& c) {
  assert(c.tag.index < peer_accepts_.size());
  PeerAccept& a = peer_accepts_[c.tag.index];
  a.armed = false;
  if (c.ok()) {
    counters_.accepted_total.fetch_add(1, std::memory_order_relaxed);
    admit(static_cast<std::uint32_t>(c.res), PerIpCounts::key(a.addr));
    if (counters_.live_slots.load(std::memory_order_relaxed) >= accept_limit_) pause_accepting();
  } else {
    on_accept_error(c.error());
  }
  arm_accept();
}

void Worker::on_accept_error(int err) {
  if (err == ENFILE || err == EMFILE) {
    // The regular part of the table is full.  Re-arm once a slot frees;
    // meanwhile answer newcomers from the reserve instead of leaving them in
    // the backlog.
    accept_paused_ = true;
    counters_.accept_errors_total.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t dropped = 0;
    if (accept_log_.allow(now_ms_, dropped))
        RG_LOG(warn, "worker %u: descriptor table full (%u slots): the kernel dropped a connection; the reserve "
                   "(%u slots) was too small for this burst (%u similar lines suppressed)", id_, slots_,
             slots_ - accept_limit_, dropped);
    pause_accepting();
  } else if (err != ECANCELED) {
    counters_.accept_errors_total.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t dropped = 0;
    if (accept_log_.allow(now_ms_, dropped))
      RG_LOG(warn, "worker %u: accept failed: %s (%u similar lines suppressed)", id_, std::strerror(err), dropped);
  }
}

void Worker::pause_accepting() {
  if (!accept_paused_) {
    accept_paused_ = true;
    std::uint64_t dropped = 0;
    if (accept_log_.allow(now_ms_, dropped))
      RG_LOG(warn, "worker %u: %u of %u table slots in use; refusing newcomers with 503 until a connection "
                   "closes (%u similar lines suppressed)", id_, accept_limit_, slots_, dropped);
  }
  if (accept_armed_) ring_.cancel_tag({op_accept, 0, 0}, {op_accept_cancel, 0, 0});
  // Single accepts stay marked armed until their ECANCELED arrives: their
  // address buffers are the kernel's until then.
  for (std::uint32_t i = 0; i < peer_accepts_.size(); ++i)
    if (peer_accepts_[i].armed) ring_.cancel_tag({op_accept_peer, 0, i}, {op_accept_cancel, 0, 0});
  arm_refusals();
}

// Keeps a few single accepts into free slots in flight while accepting is
// paused, so every newcomer gets an explicit 503 instead of a backlog wait.
void Worker::arm_refusals() {
  constexpr std::uint32_t refusal_accepts_max = 4;
  // Claimed slots plus live ones never exceed the table: the reserve is what
  // keeps this search short.
  while (accept_paused_ && !draining_ && refusal_accepts_ < refusal_accepts_max &&
         counters_.live_slots.load(std::memory_order_relaxed) + refusal_accepts_ < slots_) {
    std::uint32_t slot = nil;
    while (slot == nil && !recently_freed_.empty()) {
      const std::uint32_t s = recently_freed_.back();
      recently_freed_.pop_back();
      if (conns_[s].state == State::free) slot = s;
    }
    for (std::uint32_t i = 0; slot == nil && i < slots_; ++i) {
      const std::uint32_t s = (claim_cursor_ + i) % slots_;
      if (conns_[s].state == State::free) {
        slot = s;
        break;
      }
    }
    if (slot == nil) return;
    claim_cursor_ = (slot + 1) % slots_;
    if (!ring_.accept_into(listen_fd_, slot, {op_accept_reserved, conns_[slot].generation, slot})) return;
    conns_[slot].state = State::claimed;
    ++refusal_accepts_;
  }
}

void Worker::on_accept_reserved(const ring::Completion& c) {
  --refusal_accepts_;
  const std::uint32_t slot = c.tag.index;
  assert(conns_[slot].state == State::claimed);
  conns_[slot].state = State::free;
  if (!c.ok()) {
    if (c.error() != ECANCELED) arm_refusals();
    return;
  }
  counters_.accepted_total.fetch_add(1, std::memory_order_relaxed);
  claim_record(slot);
  begin_handshake(slot);
  if (conns_[slot].state == State::handshake)
    answer_const(slot, draining_ ? Const::shutdown_http : Const::busy_http,
                 draining_ ? Refusal::shutdown : Refusal::table_full);
  arm_refusals();
}

// A new connection's record: reset, counted, on no list, in no state yet.
void Worker::claim_record(std::uint32_t slot) {
  assert(slot < slots_);
  Conn& k = conns_[slot];
  assert(k.state == State::free && k.ops == 0);
  const std::uint32_t generation = k.generation;
  k = Conn{};
  k.generation = generation;
  k.aux = nil;
  k.session = nil;
  k.sub = nil;
  k.timer_prev = k.timer_next = nil;
  if (per_ip_) ip_keys_[slot] = PerIpCounts::none;
  counters_.live_slots.fetch_add(1, std::memory_order_relaxed);
}

// Starts reading the upgrade request, under handshake_timeout.
void Worker::begin_handshake(std::uint32_t slot) {
  Conn& k = conns_[slot];
  k.state = State::handshake;
  timer_add(slot, TimerList::handshake, config_.handshake_timeout_ms);
  arm_recv(slot);
}

// Admission at accept time: the per-IP limit, then the accept-rate bucket.
// Every refusal here is an explicit answer sent before the request is read.
void Worker::admit(std::uint32_t slot, std::uint32_t ip_key) {
  claim_record(slot);
  if (draining_) {
    begin_handshake(slot);
    answer_const(slot, Const::shutdown_http, Refusal::shutdown);
    return;
  }
  if (ip_key != PerIpCounts::none) {
    if (shared_.per_ip.add(id_, ip_key) > config_.per_ip_limit) {
      shared_.per_ip.remove(id_, ip_key);
      begin_handshake(slot);
      answer_const(slot, Const::per_ip_http, Refusal::per_ip);
      return;
    }
    ip_keys_[slot] = ip_key;
  }
  if (!rate_limited_) {
    begin_handshake(slot);
    return;
  }
  refill_tokens();
  if (queue_depth_ == 0 && tokens_ >= 1.0) {
    tokens_ -= 1.0;
    begin_handshake(slot);
    return;
  }
  if (queue_depth_ >= config_.accept_queue_max) {
    begin_handshake(slot);
    answer_const(slot, Const::rate_http, Refusal::accept_queue_full);
    return;
  }
  // Nothing is read while queued: the request waits in the socket's kernel
  // buffer, so a queued connection costs its record and nothing else.
  conns_[slot].state = State::queued;
  timer_add(slot, TimerList::queued, config_.accept_queue_timeout_ms);
  ++queue_depth_;
  counters_.accept_queue_depth.store(queue_depth_, std::memory_order_relaxed);
  counters_.queued_total.fetch_add(1, std::memory_order_relaxed);
}

void Worker::refill_tokens() {
  if (now_ms_ > tokens_at_ms_) {
    tokens_ = std::min(tokens_max_, tokens_ + static_cast<double>(now_ms_ - tokens_at_ms_) * tokens_per_ms_);
    tokens_at_ms_ = now_ms_;
  }
}

// Starts the oldest queued connections while tokens last.
void Worker::serve_accept_queue() {
  refill_tokens();
  while (queue_depth_ > 0 && tokens_ >= 1.0) {
    const std::uint32_t slot = queue_.front(TimerList::queued);
    assert(slot != nil && conns_[slot].state == State::queued);
    const std::uint32_t queued_at = conns_[slot].deadline_ms - static_cast<std::uint32_t>(config_.accept_queue_timeout_ms);
    counters_.queue_wait_ms.record(rel_now() - queued_at);
    timer_remove(slot);
    --queue_depth_;
    tokens_ -= 1.0;
    begin_handshake(slot);
  }
  counters_.accept_queue_depth.store(queue_depth_, std::memory_order_relaxed);
}

// How long the loop may sleep: one tick, or less when a queued connection
// is waiting for the next token.
std::uint64_t Worker::wait_budget_us() const {
  constexpr std::uint64_t tick_us = std::uint64_t{tick_ms} * 1000;
  // A fan-out cut short by fanout_batch goes on after this turn's I/O.
  if (fanout_count_ > 0) return 0;
  if (!rate_limited_ || queue_depth_ == 0 || tokens_ >= 1.0) return tick_us;
  const double us = (1.0 - tokens_) / tokens_per_ms_ * 1000.0;
  return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(us) + 1, 1000, tick_us);
}

void Worker::count_refusal(Refusal why) noexcept {
  auto& c = counters_.refusals[static_cast<std::size_t>(why)];
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // single writer
}

void Worker::on_recv(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  const bool ended = !c.more();
  if (ended) {
    k.flags &= static_cast<std::uint16_t>(~f_recv_armed);
    --k.ops;
  }
  if (c.res > 0) {
    assert(c.has_buffer());
    const std::span<const std::uint8_t> data = buffers_.buffer(c.buffer_id(), static_cast<std::uint32_t>(c.res));
    // Any bytes prove the peer alive: the heartbeat timer reads these
    // lazily when it fires, so traffic costs no timer updates.
    k.last_rx_ms = rel_now();
    k.flags &= static_cast<std::uint16_t>(~f_ping_outstanding);
    switch (k.state) {
      case State::handshake: handle_handshake_bytes(slot, data); break;
      case State::open:
      case State::ws_closing: handle_ws_bytes(slot, data); break;
      default: break;  // lingering or going away: input is discarded
    }
    buffers_.recycle(c.buffer_id());
    if (ended && !(k.flags & (f_recv_armed | f_rearm_queued | f_read_paused)) && k.state != State::free &&
        k.state < State::tearing_down) {
      k.flags |= f_rearm_queued;
      rearm_.push_back(slot);
    }
  } else if (c.res == 0) {
    if (c.has_buffer()) buffers_.recycle(c.buffer_id());
    // The peer closed its side.  Nothing more can be said to it usefully.
    teardown(slot);
  } else if (c.error() == ENOBUFS) {
    if (!(k.flags & (f_rearm_queued | f_read_paused)) && k.state < State::tearing_down) {
      k.flags |= f_rearm_queued;
      rearm_.push_back(slot);
    }
  } else if (c.error() != ECANCELED) {
    if (c.has_buffer()) buffers_.recycle(c.buffer_id());
    teardown(slot);  // ECONNRESET, ETIMEDOUT, ...: the connection is gone
  } else if (c.has_buffer()) {
    buffers_.recycle(c.buffer_id());
  }
  maybe_finish_teardown(slot);
}

std::uint32_t Worker::acquire_parser() {
  return parsers_.acquire([&] { return new (std::nothrow) ParseSlot(http_limits_); });
}

void Worker::handle_handshake_bytes(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  if (k.pending_const != Const::none || (k.aux != nil && !(k.flags & f_aux_parser))) return;  // answered already
  http::UpgradeParser* parser;
  if (k.flags & f_aux_parser) {
    parser = &parsers_[k.aux].parser;
  } else {
    scratch_ = http::UpgradeParser(http_limits_);
    parser = &scratch_;
  }
  const auto r = parser->feed(data);
  if (r.status == http::UpgradeParser::Status::need_more) {
    if (parser == &scratch_) {
      // The request arrived split: its parse state now needs a home.
      k.aux = acquire_parser();
      if (k.aux == nil) {
        answer_const(slot, Const::busy_http, Refusal::busy);
        return;
      }
      k.flags |= f_aux_parser;
      parsers_[k.aux].parser = scratch_;
    }
    return;
  }
  if (r.status == http::UpgradeParser::Status::error) {
    answer_error(slot, parser->error_status(), parser->error_reason(), 0);
    return;
  }
  const http::Decision d = http::decide(*parser, policy_);
  if (d.status != 101) {
    answer_error(slot, d.status, d.reason, 0);
    return;
  }
  if (d.route == http::Route::pubsub && !check_pubsub_request(slot, *parser)) return;  // answered
  if (shared_.kernel.refuse.load(std::memory_order_relaxed)) {
    refuse_capacity(slot, *parser, d.subprotocol, Refusal::kernel_budget);
    return;
  }
  if (shared_.buffered_bytes() * 100 >= shared_.max_buffered_bytes * config_.kernel_refuse_percent) {
    refuse_capacity(slot, *parser, d.subprotocol, Refusal::buffered_bytes);
    return;
  }
  // Count first, then compare the sum: when two workers admit at once each
  // sees the other's count (sequentially consistent: a locked add and plain
  // loads on x86), so max_connections is never exceeded; the race costs at
  // most a spare refusal.
  counters_.open_connections.fetch_add(1);
  if (shared_.open_connections() > shared_.max_connections) {
    counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    refuse_capacity(slot, *parser, d.subprotocol, Refusal::max_connections);
    return;
  }
  const std::uint32_t response = responses_.acquire();
  if (response == nil || (d.route == http::Route::pubsub && !open_pubsub(slot, *parser))) {
    if (response != nil) responses_.release(response);
    counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    release_aux(k);
    answer_const(slot, Const::busy_http, Refusal::busy);
    return;
  }
  {
    const std::uint32_t started_at = k.deadline_ms - static_cast<std::uint32_t>(config_.handshake_timeout_ms);
    counters_.handshake_ms.record(rel_now() - started_at);
  }
  Response& out = responses_[response];
  out.len = static_cast<std::uint16_t>(http::build_switching_protocols(out.bytes, parser->key(), d.subprotocol));
  out.sent = 0;
  release_aux(k);  // the parser (if any) is done; `d` and the key are used up
  k.aux = response;
  k.state = State::open;
  k.last_rx_ms = rel_now();
  arm_heartbeat(slot);
  k.flags |= f_upgraded;  // open_connections was counted above
  counters_.upgraded_total.fetch_add(1, std::memory_order_relaxed);
  // Bytes after the request already belong to the WebSocket stream.
  const std::span<const std::uint8_t> rest = data.subspan(r.consumed);
  pump_send(slot);
  if (k.sub != nil) subscribe_at_connect(slot);
  if (!rest.empty()) handle_ws_bytes(slot, rest);
}

// A refusal for lack of capacity: the JSON 503, or with reject = close an
// upgrade followed at once by close 1013, for clients that only understand
// close codes.  Either way the connection then lingers until the client goes.
void Worker::refuse_capacity(std::uint32_t slot, const http::UpgradeParser& parser, std::string_view subprotocol,
                             Refusal why) {
  Conn& k = conns_[slot];
  const std::uint32_t response = reject_with_close_ ? responses_.acquire() : nil;
  if (response == nil) {
    release_aux(k);
    answer_const(slot, Const::busy_http, why);
    return;
  }
  static constexpr std::string_view reason = "server at maximum connection capacity, try again later";
  Response& out = responses_[response];
  std::size_t n = http::build_switching_protocols(out.bytes, parser.key(), subprotocol);
  static_assert(http::response_bytes_max >= 300 + 4 + reason.size());
  out.bytes[n++] = static_cast<char>(0x88);
  out.bytes[n++] = static_cast<char>(2 + reason.size());
  out.bytes[n++] = static_cast<char>(1013 >> 8);
  out.bytes[n++] = static_cast<char>(1013 & 0xFF);
  std::memcpy(out.bytes.data() + n, reason.data(), reason.size());
  out.len = static_cast<std::uint16_t>(n + reason.size());
  out.sent = 0;
  release_aux(k);  // after the key was used
  k.aux = response;
  count_refusal(why);
  start_linger(slot);
}

void Worker::answer_error(std::uint32_t slot, std::uint16_t status, std::string_view reason,
                          std::uint32_t retry_after_s) {
  Conn& k = conns_[slot];
  // Reasons are string literals, never parser memory, so the parser can go.
  release_aux(k);
  k.aux = responses_.acquire();
  if (k.aux == nil) {
    answer_const(slot, Const::busy_http, Refusal::busy);  // what the client is told
    return;
  }
  count_refusal(refusal_for_status(status));
  Response& out = responses_[k.aux];
  out.len = static_cast<std::uint16_t>(http::build_error(out.bytes, status, reason, retry_after_s));
  out.sent = 0;
  RG_LOG(debug, "worker %u: slot %u answered %d: %s", id_, slot, status, std::string(reason));
  start_linger(slot);
  pump_send(slot);
}

std::span<const std::uint8_t> Worker::const_answer(Const what) const noexcept {
  const auto text = [](const auto& a, std::size_t n) {
    return std::span<const std::uint8_t>{reinterpret_cast<const std::uint8_t*>(a.data()), n};
  };
  switch (what) {
    case Const::busy_http: return text(busy_http_, busy_http_len_);
    case Const::shutdown_http: return text(shutdown_http_, shutdown_http_len_);
    case Const::busy_ws: return text(busy_ws_, busy_ws_len_);
    case Const::shutdown_ws: return text(shutdown_ws_, shutdown_ws_len_);
    case Const::per_ip_http: return text(per_ip_http_, per_ip_http_len_);
    case Const::rate_http: return text(rate_http_, rate_http_len_);
    case Const::ping_ws: return {ping_ws_.data(), ping_ws_.size()};
    case Const::idle_ws: return text(idle_ws_, idle_ws_len_);
    case Const::none: break;
  }
  return {};
}

void Worker::answer_const(std::uint32_t slot, Const what, Refusal why) {
  Conn& k = conns_[slot];
  if (what == Const::busy_ws) counters_.busy_closes_total.fetch_add(1, std::memory_order_relaxed);
  else count_refusal(why);
  k.pending_const = what;
  start_linger(slot);
  pump_send(slot);
}

bool Worker::attach_session(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.session != nil) return true;
  k.session = sessions_.acquire([&]() -> ws::Session* {
    auto* s = new (std::nothrow) ws::Session();
    if (s && !init_session(*s)) {
      delete s;
      return nullptr;
    }
    return s;
  });
  if (k.session == nil) return false;
  if (k.session >= books_.size()) books_.resize(k.session + 1);
  if (k.session >= send_vecs_.size()) send_vecs_.resize(k.session + 1);
  books_[k.session] = Book{};
  return true;
}

// An idle connection whose next bytes are exactly one valid close frame (the
// usual way a client leaves) is answered from a 512-byte answer slot, without
// attaching a wslay session: a mass disconnect of idle clients must not
// allocate a session for every one of them at once.
bool Worker::answer_idle_close(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  if (k.session != nil || k.aux != nil || k.state != State::open) return false;
  // A client that was not reading answers our pings and closes in one
  // write: pongs first, then the close.  Those pongs need no session either.
  bool pongs = false;
  while (is_idle_pong(data)) {
    const ws::DecodeResult p = ws::decode_header(data);
    data = data.subspan(static_cast<std::size_t>(p.header.header_len + p.header.payload_len));
    pongs = true;
  }
  const ws::DecodeResult d = ws::decode_header(data);
  const ws::FrameHeader& h = d.header;
  if (d.status != ws::DecodeStatus::ok || h.opcode != static_cast<std::uint8_t>(ws::Opcode::close) || !h.fin ||
      !h.masked || h.rsv != 0 || h.payload_len > ws::control_payload_max || h.header_len + h.payload_len != data.size())
    return false;
  std::array<std::uint8_t, ws::control_payload_max> payload;
  const auto n = static_cast<std::size_t>(h.payload_len);
  std::memcpy(payload.data(), data.data() + h.header_len, n);
  ws::mask_bytes({payload.data(), n}, h.mask_key);
  // Anything wrong with it is left to the session path, which answers with
  // the right close code and reason.
  if (ws::check_close_payload({payload.data(), n}) != ws::ClosePayloadError::none) return false;
  const std::uint32_t response = responses_.acquire();
  if (response == nil) return false;
  // Echo the status code (RFC 6455 5.5.1); an empty close gets an empty one.
  Response& out = responses_[response];
  out.bytes[0] = static_cast<char>(0x88);
  out.bytes[1] = static_cast<char>(n >= 2 ? 2 : 0);
  if (n >= 2) {
    out.bytes[2] = static_cast<char>(payload[0]);
    out.bytes[3] = static_cast<char>(payload[1]);
  }
  out.len = n >= 2 ? 4 : 2;
  out.sent = 0;
  if (pongs) counters_.pongs_received_total.fetch_add(1, std::memory_order_relaxed);
  k.aux = response;
  k.flags |= f_close_after_send;
  k.state = State::ws_closing;
  timer_add(slot, TimerList::closing, config_.close_timeout_ms);
  pump_send(slot);
  return true;
}

void Worker::handle_ws_bytes(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  if (k.state == State::ws_closing && (k.flags & f_close_after_send)) return;  // nothing more to read
  if (k.flags & f_const_close_sent) {
    scan_for_close(slot, data);
    return;
  }
  if (answer_idle_close(slot, data)) return;
  if (consume_idle_pongs(slot, data)) return;
  if (!attach_session(slot)) {
    std::uint64_t dropped = 0;
    if (conn_log_.allow(now_ms_, dropped))
      RG_LOG(warn, "worker %u: %u sessions active (max_active_sessions): closing a connection with 1013 "
                   "(%u similar lines suppressed)", id_, config_.max_active_sessions, dropped);
    answer_const(slot, Const::busy_ws, Refusal::busy);
    return;
  }
  ws::Session& s = sessions_[k.session];
  note_progress(slot);
  feeding_slot_ = slot;
  const ws::Session::FeedResult fed = s.feed(data);
  feeding_slot_ = nil;
  if (fed == ws::Session::FeedResult::fatal) {
    teardown(slot);
    return;
  }
  account(slot);
  // slow_consumer_policy = close chose to close during this read: the close
  // waits behind unread output, so the linger's close_timeout bounds it.
  if (books_[k.session].slow_close_sent && k.state == State::open) start_linger(slot);
  if (s.close_code() != 0 && s.close_code() != 1001 && s.close_code() != 1000 &&
      s.close_code() != config_.slow_consumer_close_code) {
    counters_.protocol_closes_total.fetch_add(1, std::memory_order_relaxed);
  }
  after_ws_progress(slot);
}

// Decides what the connection does next once its session moved: send more,
// finish the close handshake, or give the session back to the pool.
void Worker::after_ws_progress(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.session == nil || k.state >= State::lingering) {
    pump_send(slot);
    return;
  }
  ws::Session& s = sessions_[k.session];
  pump_send(slot);
  if (k.flags & f_send_in_flight) return;
  if (s.close_sent()) {
    if (s.close_received()) {
      // RFC 6455 7.1.1: the server closes the TCP connection first.
      teardown(slot);
    } else if (s.read_closed()) {
      start_linger(slot);  // we failed the connection: let the peer read our close
    } else if (k.state != State::ws_closing) {
      k.state = State::ws_closing;
      timer_add(slot, TimerList::closing, config_.close_timeout_ms);
    }
    return;
  }
  if (s.quiescent() && k.aux == nil && !(k.flags & f_read_paused)) {
    release_session(k);
    if (k.timer_list == TimerList::active) arm_heartbeat(slot);
  }
}

// Progress on a connection with a session: push its stall deadline back
// (a backpressured one is on backpressure_timeout instead).
void Worker::note_progress(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state == State::open && k.timer_list != TimerList::backpressure)
    timer_add(slot, TimerList::active, config_.stall_timeout_ms);
}

// O(1) accounting after anything that changed a session's outbound queue:
// the worker's totals move by the difference, and backpressure turns on
// above frame_buffer_size and off at buffer_drain_threshold of it.
Worker::Book* Worker::book_of(const Conn& k) noexcept {
  if (k.sub != nil) return &subs_[k.sub].book;
  if (k.session != nil) return &books_[k.session];
  return nullptr;
}

void Worker::account(std::uint32_t slot) {
  Conn& k = conns_[slot];
  Book* book = book_of(k);
  if (!book) return;
  Book& b = *book;
  std::uint64_t bytes = 0;
  std::uint32_t messages = 0;
  if (k.session != nil) {
    const ws::Session& s = sessions_[k.session];
    bytes = s.queued_bytes();
    messages = static_cast<std::uint32_t>(s.queued_messages());
  }
  if (k.sub != nil) {
    bytes += subs_[k.sub].bytes;
    messages += subs_[k.sub].count;
  }
  buffered_bytes_ = buffered_bytes_ - b.bytes + bytes;
  messages_pending_ = messages_pending_ - b.messages + messages;
  b.bytes = bytes;
  b.messages = messages;
  counters_.buffered_bytes.store(buffered_bytes_, std::memory_order_relaxed);
  counters_.messages_pending.store(messages_pending_, std::memory_order_relaxed);
  publish_segment_gauges();
  if (bytes > buffered_hw_) {
    buffered_hw_ = bytes;
    counters_.buffered_max_connection_bytes.store(bytes, std::memory_order_relaxed);
  }
  if (!b.backpressured && bytes > config_.backpressure_on_bytes() && k.state == State::open) {
    b.backpressured = true;
    b.backpressure_since_ms = rel_now();
    counters_.backpressure_activations_total.fetch_add(1, std::memory_order_relaxed);
    counters_.backpressured_connections.store(++backpressured_, std::memory_order_relaxed);
    pause_reading(slot);
    timer_add(slot, TimerList::backpressure, config_.backpressure_timeout_ms);
  } else if (b.backpressured && bytes <= config_.backpressure_off_bytes()) {
    end_backpressure(slot, b);
  }
}

void Worker::end_backpressure(std::uint32_t slot, Book& b) {
  Conn& k = conns_[slot];
  b.backpressured = false;
  counters_.backpressure_ms.record(rel_now() - b.backpressure_since_ms);
  counters_.backpressured_connections.store(--backpressured_, std::memory_order_relaxed);
  if (k.timer_list == TimerList::backpressure) timer_remove(slot);
  if (k.state == State::open) {
    note_progress(slot);
    maybe_resume_reading(slot);
  }
}

// backpressure_timeout: a connection still over the threshold is a slow
// consumer and goes; one that drained part of the way carries on.
void Worker::on_backpressure_timeout(std::uint32_t slot) {
  Conn& k = conns_[slot];
  Book* book = book_of(k);
  if (!book || !book->backpressured) return;
  Book& b = *book;
  if (b.bytes > config_.backpressure_on_bytes()) {
    close_slow_consumer(slot);
    return;
  }
  end_backpressure(slot, b);
}

void Worker::close_slow_consumer(std::uint32_t slot) {
  Conn& k = conns_[slot];
  Book& b = *book_of(k);
  std::uint64_t dropped = 0;
  if (conn_log_.allow(now_ms_, dropped))
    RG_LOG(info, "worker %u: slot %u still had %u bytes buffered after backpressure_timeout (%u ms): closing it "
                 "as a slow consumer (%u similar lines suppressed)", id_, slot, b.bytes,
           config_.backpressure_timeout_ms, dropped);
  if (b.slow_close_sent) {
    after_ws_progress(slot);
    if (k.state == State::open) start_linger(slot);
    return;
  }
  b.slow_close_sent = true;
  counters_.slow_consumer_closes_total.fetch_add(1, std::memory_order_relaxed);
  // The close frame queues behind output the peer is not reading, so
  // close_timeout (the linger) bounds how long we wait for it to get out.
  close_with(slot, static_cast<std::uint16_t>(config_.slow_consumer_close_code), "slow consumer");
}

// Closes an open connection with `code`: the close frame goes out through
// a session (attached if need be) after whatever frame is half sent; queued
// deliveries behind it are dropped, since nothing may follow a close.
void Worker::close_with(std::uint32_t slot, std::uint16_t code, std::string_view reason) {
  Conn& k = conns_[slot];
  if (k.state != State::open) return;
  if (k.sub != nil) {
    // The head stays if the kernel is sending it (its bytes must stay
    // valid until the send completes) or has sent part of it.
    drop_deliveries(subs_[k.sub], (k.flags & f_send_in_flight) && (k.flags & f_send_delivery));
    account(slot);
  }
  if (!attach_session(slot)) {
    teardown(slot);
    return;
  }
  sessions_[k.session].queue_close(code, reason);
  after_ws_progress(slot);
  if (k.state == State::open) start_linger(slot);
}

void Worker::pause_reading(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.flags & f_read_paused) return;
  k.flags |= f_read_paused;
  // The recv's final CQE (ECANCELED) clears f_recv_armed; data CQEs already
  // posted before it are still handled, which the queue limit absorbs.
  if ((k.flags & f_recv_armed) && ring_.cancel_tag(tag(op_recv, slot), tag(op_cancel, slot))) ++k.ops;
}

void Worker::maybe_resume_reading(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (!(k.flags & f_read_paused) || k.session == nil || k.state != State::open) return;
  if (books_[k.session].backpressured) return;
  k.flags &= static_cast<std::uint16_t>(~f_read_paused);
  if (!(k.flags & (f_recv_armed | f_rearm_queued))) {
    k.flags |= f_rearm_queued;
    rearm_.push_back(slot);  // armed at the end of this loop turn
  }
}

// No progress for stall_timeout: a half-sent message or a peer that stopped
// reading.  Tell the peer if a send can still get through, else just go.
void Worker::on_stall(std::uint32_t slot) {
  Conn& k = conns_[slot];
  std::uint64_t dropped = 0;
  if (conn_log_.allow(now_ms_, dropped))
    RG_LOG(info, "worker %u: slot %u made no progress for %ums; closing (%u similar lines suppressed)", id_, slot,
           config_.stall_timeout_ms, dropped);
  if (k.session == nil || (k.flags & f_send_in_flight)) {
    teardown(slot);
    return;
  }
  close_with(slot, 1008, "no progress within stall_timeout");
}

// After a constant close frame (shutdown), the peer's close is all we wait
// for.  Frames are scanned without a session; one split across reads is
// missed, and then EOF or close_timeout ends the connection instead.
void Worker::scan_for_close(std::uint32_t slot, std::span<const std::uint8_t> data) {
  while (!data.empty()) {
    const ws::DecodeResult d = ws::decode_header(data);
    if (d.status != ws::DecodeStatus::ok) return;
    if (d.header.opcode == static_cast<std::uint8_t>(ws::Opcode::close)) {
      teardown(slot);  // the server closes the TCP connection first
      return;
    }
    const std::uint64_t frame = d.header.header_len + d.header.payload_len;
    if (frame > data.size()) return;
    data = data.subspan(static_cast<std::size_t>(frame));
  }
}

void Worker::pump_send(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if ((k.flags & f_send_in_flight) || k.state >= State::tearing_down) return;
  std::span<const std::uint8_t> bytes;
  std::size_t iov_count = 0;  // the session's output, gathered into send_vecs_
  std::uint16_t source = 0;
  const bool response_pending =
      k.aux != nil && !(k.flags & f_aux_parser) && responses_[k.aux].sent < responses_[k.aux].len;
  SubState* q = k.sub != nil ? &subs_[k.sub] : nullptr;
  if (q && q->head != nil && q->offset > 0) {
    // A delivery frame half sent: nothing may interleave with its rest.
    bytes = delivery_bytes(*q);
    source = f_send_delivery;
  } else if (k.pending_const != Const::none && !response_pending) {
    bytes = const_answer(k.pending_const);
    source = f_send_const;
    k.sent_const = k.pending_const;
  } else if (response_pending) {
    Response& out = responses_[k.aux];
    bytes = {reinterpret_cast<const std::uint8_t*>(out.bytes.data()) + out.sent,
             static_cast<std::size_t>(out.len - out.sent)};
  } else if (k.session != nil && (k.state != State::lingering || sessions_[k.session].has_output())) {
    // Lingering: only the close frame of a failed connection is left.
    iov_count = sessions_[k.session].next_output(send_vecs_[k.session].iov);
    if (iov_count > 0) source = f_send_from_session;
  }
  // Deliveries go out between the session's frames (pongs, closes), never
  // inside one, and only while the connection is open.
  if (bytes.empty() && iov_count == 0 && q && q->head != nil && k.state == State::open && !response_pending &&
      k.pending_const == Const::none && (k.session == nil || !sessions_[k.session].has_output())) {
    bytes = delivery_bytes(*q);
    source = f_send_delivery;
  }
  if (bytes.empty() && iov_count == 0) {
    // Lingering only drains input: a session whose close frame is out has
    // nothing left to do, and must not hold a pool entry for close_timeout.
    if (k.state == State::lingering && k.session != nil) release_session(k);
    if (k.state == State::lingering && !(k.flags & f_shutdown_sent)) {
      // Everything is said: send FIN, keep reading until the peer closes so
      // unread input never turns our answer into a reset.
      if (ring_.shutdown_write(slot, tag(op_shutdown, slot))) {
        k.flags |= f_shutdown_sent;
        ++k.ops;
      }
    }
    return;
  }
  bool queued = false;
  if (iov_count == 1) {
    const iovec& v = send_vecs_[k.session].iov[0];
    queued = ring_.send(slot, {static_cast<const std::uint8_t*>(v.iov_base), v.iov_len}, tag(op_send, slot));
  } else if (iov_count > 1) {
    SendVec& v = send_vecs_[k.session];
    v.hdr = msghdr{};
    v.hdr.msg_iov = v.iov.data();
    v.hdr.msg_iovlen = iov_count;
    queued = ring_.send_msg(slot, &v.hdr, tag(op_send, slot));
  } else {
    queued = ring_.send(slot, bytes, tag(op_send, slot));
  }
  if (!queued) {
    if (source == f_send_from_session) sessions_[k.session].output_sent(0);
    teardown(slot);
    return;
  }
  k.flags = static_cast<std::uint16_t>((k.flags & ~(f_send_from_session | f_send_const | f_send_delivery)) |
                                       f_send_in_flight | source);
  ++k.ops;
}

void Worker::on_send(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  --k.ops;
  k.flags &= static_cast<std::uint16_t>(~f_send_in_flight);
  const std::size_t sent = c.ok() ? static_cast<std::size_t>(c.res) : 0;
  if (k.flags & f_send_from_session) {
    sessions_[k.session].output_sent(sent);
  } else if (k.flags & f_send_delivery) {
    delivery_sent(slot, sent);
  } else if (k.flags & f_send_const) {
    // Constant answers are a few hundred bytes: one send takes them whole.
    // A short send (never seen) ends the connection rather than truncate.
    if (c.ok() && sent != const_answer(k.sent_const).size()) {
      teardown(slot);
      maybe_finish_teardown(slot);
      return;
    }
    if (c.ok() && (k.sent_const == Const::shutdown_ws || k.sent_const == Const::idle_ws))
      k.flags |= f_const_close_sent;
    // A constant chosen while this one was in flight (a ping overtaken by a
    // close) is still to be sent.
    if (c.ok() && k.pending_const == k.sent_const) k.pending_const = Const::none;
  } else if (k.aux != nil && !(k.flags & f_aux_parser)) {
    Response& out = responses_[k.aux];
    out.sent = static_cast<std::uint16_t>(out.sent + sent);
    if (out.sent == out.len && (k.flags & f_close_after_send)) {
      // Our close reply is out and the peer's close was in: the server
      // closes the TCP connection first (RFC 6455 7.1.1).
      release_aux(k);
      teardown(slot);
      maybe_finish_teardown(slot);
      return;
    }
    // An error answer's slot goes back as soon as it is sent, not after the
    // linger: lingering clients must not hold answer slots.
    if (out.sent == out.len && k.state != State::handshake) release_aux(k);
  }
  if (!c.ok()) {
    teardown(slot);  // EPIPE, ECONNRESET, ECANCELED: the peer is gone or we are tearing down
    maybe_finish_teardown(slot);
    return;
  }
  if (k.state >= State::tearing_down) {
    maybe_finish_teardown(slot);
    return;
  }
  if (k.state == State::lingering) {
    pump_send(slot);
    return;
  }
  if (k.session != nil || (k.flags & f_send_delivery)) {
    account(slot);
    // A subscriber whose queue just emptied is idle again: back to
    // heartbeats (one timer update per delivery, not a stall re-arm too).
    if (k.state == State::open && k.sub != nil && subs_[k.sub].head == nil && k.session == nil)
      arm_heartbeat(slot);
    else note_progress(slot);
  }
  after_ws_progress(slot);
}

void Worker::start_linger(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state >= State::lingering) return;
  k.state = State::lingering;
  timer_add(slot, TimerList::closing, config_.close_timeout_ms);
  pump_send(slot);
}

void Worker::teardown(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state >= State::tearing_down || k.state == State::free) return;
  timer_remove(slot);
  k.state = State::tearing_down;
  // Cancel each operation by its own user_data: the kernel finds those in a
  // hash table.  Cancelling by descriptor walks every armed request of the
  // ring, which made closing 30,000 connections take ~15 s (O(n^2)).
  bool stalled = false;
  if (k.flags & f_recv_armed) {
    if (ring_.cancel_tag(tag(op_recv, slot), tag(op_cancel, slot))) ++k.ops;
    else stalled = true;
  }
  if (k.flags & f_send_in_flight) {
    if (ring_.cancel_tag(tag(op_send, slot), tag(op_cancel, slot))) ++k.ops;
    else stalled = true;
  }
  if (stalled) {
    stalled_teardowns_.push_back(slot);
    return;
  }
  maybe_finish_teardown(slot);
}

void Worker::maybe_finish_teardown(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state != State::tearing_down || k.ops != 0) return;
  if (!ring_.close_direct(slot, tag(op_close, slot))) {
    stalled_teardowns_.push_back(slot);  // retried next loop turn
    return;
  }
  k.state = State::closing;
  ++k.ops;
}

void Worker::on_close(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  --k.ops;
  if (!c.ok()) RG_LOG(warn, "worker %u: closing slot %u failed: %s", id_, slot, std::strerror(c.error()));
  release(slot);
}

void Worker::release_aux(Conn& k) {
  if (k.aux == nil) return;
  if (k.flags & f_aux_parser) parsers_.release(k.aux);
  else responses_.release(k.aux);
  k.aux = nil;
  k.flags &= static_cast<std::uint16_t>(~f_aux_parser);
}

void Worker::release_session(Conn& k) {
  if (k.session == nil) return;
  ws::Session& s = sessions_[k.session];
  if (k.sub == nil) {
    Book& b = books_[k.session];
    buffered_bytes_ -= b.bytes;
    messages_pending_ -= b.messages;
    counters_.buffered_bytes.store(buffered_bytes_, std::memory_order_relaxed);
    counters_.messages_pending.store(messages_pending_, std::memory_order_relaxed);
    if (b.backpressured) {
      counters_.backpressure_ms.record(rel_now() - b.backpressure_since_ms);
      counters_.backpressured_connections.store(--backpressured_, std::memory_order_relaxed);
    }
    b = Book{};
  }
  k.flags &= static_cast<std::uint16_t>(~f_read_paused);
  if (s.reusable()) {
    s.recycle();
    sessions_.release(k.session);
  } else if (init_session(s)) {
    sessions_.release(k.session);
  }
  // (Out of memory re-creating the context retires this pool entry: its
  // index is leaked rather than a broken session handed out.)
  k.session = nil;
  // A subscriber's book also held the session's bytes: settle it without.
  if (k.sub != nil) account(static_cast<std::uint32_t>(&k - conns_));
}

void Worker::release(std::uint32_t slot) {
  Conn& k = conns_[slot];
  assert(k.ops == 0);
  release_aux(k);
  release_session(k);
  if (k.sub != nil) release_subscriber(slot);
  if (k.flags & f_upgraded) counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
  if (per_ip_ && ip_keys_[slot] != PerIpCounts::none) {
    shared_.per_ip.remove(id_, ip_keys_[slot]);
    ip_keys_[slot] = PerIpCounts::none;
  }
  counters_.live_slots.fetch_sub(1, std::memory_order_relaxed);
  k.generation = (k.generation + 1) & ring::generation_mask;
  k.state = State::free;
  k.flags = 0;
  k.pending_const = Const::none;
  if (accept_paused_ && recently_freed_.size() < recently_freed_max) recently_freed_.push_back(slot);
}

// ---------------------------------------------------------------- timers
// ring::DeadlineLists: one list per timeout kind, O(1) per event, nothing per
// idle connection.

void Worker::timer_add(std::uint32_t slot, TimerList list, std::uint64_t timeout_ms) {
  timer_remove(slot);
  if (list == TimerList::queued) queue_.add(slot, list, rel_now(), timeout_ms);
  else wheel_.add(slot, list, rel_now(), timeout_ms);
}

void Worker::timer_remove(std::uint32_t slot) {
  if (conns_[slot].timer_list == TimerList::queued) queue_.remove(slot);
  else wheel_.remove(slot);
}

void Worker::run_timers() {
  const std::uint32_t now = rel_now();
  wheel_.expire(now, [this](std::uint32_t slot, TimerList kind) { on_timer(slot, kind); });
  for (std::uint32_t slot; (slot = queue_.pop_expired(TimerList::queued, now)) != nil;) {
    // Waited accept_queue_timeout for a token: an explicit 503, never a hang.
    --queue_depth_;
    begin_handshake(slot);
    answer_const(slot, Const::rate_http, Refusal::accept_queue_timeout);
  }
  if (rate_limited_) counters_.accept_queue_depth.store(queue_depth_, std::memory_order_relaxed);
}

void Worker::on_timer(std::uint32_t slot, TimerList kind) {
  switch (kind) {
    case TimerList::handshake:
      // Slowloris protection: an incomplete request gets 408, then the socket.
      answer_error(slot, 408, "upgrade request not completed within handshake_timeout", 0);
      break;
    case TimerList::closing: teardown(slot); break;
    case TimerList::active: on_stall(slot); break;
    case TimerList::heartbeat: on_heartbeat(slot); break;
    case TimerList::backpressure: on_backpressure_timeout(slot); break;
    case TimerList::queued:
    case TimerList::none: assert(false && "not a wheel timer"); break;
  }
}

// An idle open connection's one timer: the earliest of its next ping, its
// pong deadline and its idle deadline.  Received bytes only move last_rx_ms;
// the timer notices when it fires and re-arms from there.
void Worker::arm_heartbeat(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (!heartbeats_ || k.state != State::open) {
    timer_remove(slot);
    return;
  }
  const std::uint32_t now = rel_now();
  auto due_in = [now](std::uint32_t at) -> std::uint64_t {
    const auto d = static_cast<std::int32_t>(at - now);
    return d > 0 ? static_cast<std::uint64_t>(d) : 0;
  };
  std::uint64_t next = ring::TimingWheel<Conn, TimerList>::timeout_ms_max;
  if (config_.idle_timeout_ms > 0)
    next = std::min(next, due_in(k.last_rx_ms + static_cast<std::uint32_t>(config_.idle_timeout_ms)));
  if (config_.ping_interval_ms > 0) {
    const auto interval = static_cast<std::uint32_t>(config_.ping_interval_ms);
    if (k.flags & f_ping_outstanding) {
      next = std::min(next, due_in(k.ping_sent_ms + static_cast<std::uint32_t>(config_.pong_timeout_ms)));
      const std::uint32_t since = now - k.ping_sent_ms;
      next = std::min(next, due_in(k.ping_sent_ms + (since / interval + 1) * interval));
    } else {
      next = std::min(next, due_in(k.last_rx_ms + interval));
    }
  }
  timer_add(slot, TimerList::heartbeat, next);
}

void Worker::on_heartbeat(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state != State::open) return;
  const std::uint32_t now = rel_now();
  if (config_.idle_timeout_ms > 0 && now - k.last_rx_ms >= config_.idle_timeout_ms) {
    counters_.idle_closes_total.fetch_add(1, std::memory_order_relaxed);
    if (k.session != nil || (k.flags & f_send_in_flight) || k.pending_const != Const::none) {
      teardown(slot);
      return;
    }
    k.pending_const = Const::idle_ws;
    k.state = State::ws_closing;
    timer_add(slot, TimerList::closing, config_.close_timeout_ms);
    pump_send(slot);
    return;
  }
  if (config_.ping_interval_ms > 0) {
    const bool outstanding = k.flags & f_ping_outstanding;
    if (outstanding && now - k.ping_sent_ms >= config_.pong_timeout_ms) {
      // Nothing at all for pong_timeout after a ping: the peer is gone
      // (no FIN ever came).  No close frame: nobody would read it.
      counters_.heartbeat_timeouts_total.fetch_add(1, std::memory_order_relaxed);
      teardown(slot);
      return;
    }
    const bool due = outstanding ? (now - k.ping_sent_ms) >= config_.ping_interval_ms
                                 : (now - k.last_rx_ms) >= config_.ping_interval_ms;
    // A connection with output in flight is not idle: its next turn to be
    // pinged comes when it is.
    if (due && k.session == nil && !(k.flags & f_send_in_flight) && k.pending_const == Const::none) {
      k.pending_const = Const::ping_ws;
      if (!outstanding) {
        k.flags |= f_ping_outstanding;
        k.ping_sent_ms = now;
      }
      counters_.pings_sent_total.fetch_add(1, std::memory_order_relaxed);
      pump_send(slot);
    }
  }
  arm_heartbeat(slot);
}

// Pongs answering our pings on an idle connection are consumed here, without
// attaching a session: at a million connections, heartbeats must not cost a
// wslay context each.  Only reads made entirely of complete, well-formed
// pongs qualify; anything else goes to the session, which judges it.
bool Worker::consume_idle_pongs(std::uint32_t slot, std::span<const std::uint8_t> data) {
  const Conn& k = conns_[slot];
  if (k.session != nil || k.aux != nil || k.state != State::open || data.empty()) return false;
  for (std::span<const std::uint8_t> rest = data; !rest.empty();) {
    if (!is_idle_pong(rest)) return false;
    const ws::DecodeResult d = ws::decode_header(rest);
    rest = rest.subspan(static_cast<std::size_t>(d.header.header_len + d.header.payload_len));
  }
  counters_.pongs_received_total.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// ---------------------------------------------------------------- pub/sub
// docs/protocol.md is the client's view; docs/architecture.md the fan-out's.

// The pub/sub part of a handshake, before anything is counted: the
// `channels=` query and, with auth = jwt, the token.  Answers and returns
// false when the request is refused.
bool Worker::check_pubsub_request(std::uint32_t slot, const http::UpgradeParser& parser) {
  if (parser.query_truncated()) {
    answer_error(slot, 414, "query string longer than 6144 bytes", 0);
    return false;
  }
  const std::string_view query = parser.query();
  const pubsub::QueryResult q = pubsub::parse_channels_query(query, *query_channels_);
  if (!q.ok()) {
    answer_error(slot, 400, q.message, 0);
    return false;
  }
  if (!verifier_) return true;
  bool in_query = false;
  std::string_view token = pubsub::query_param(query, "token", in_query);
  if (!in_query) token = parser.bearer_token();
  if (token.empty()) {
    answer_error(slot, 401, "a token is required: pass ?token=JWT or Authorization: Bearer JWT", 0);
    return false;
  }
  claims_ = verifier_->verify(token, static_cast<std::int64_t>(time(nullptr)));
  if (!claims_.ok()) {
    answer_error(slot, 401, jwt::error_message(claims_.error), 0);
    return false;
  }
  return true;
}

// Makes an upgraded pub/sub connection a subscriber: its record in the
// index, its user (the token's sub; with auth off, ?user=), its patterns.
bool Worker::open_pubsub(std::uint32_t slot, const http::UpgradeParser& parser) {
  Conn& k = conns_[slot];
  const std::uint32_t sub = index_.attach(slot);
  if (sub == nil) return false;
  if (sub >= subs_.size()) subs_.resize(sub + 1);
  subs_[sub] = SubState{};
  k.sub = sub;
  if (verifier_) {
    index_.set_user(sub, claims_.claims.sub());
    subs_[sub].patterns = intern_patterns(claims_.claims);
  } else {
    bool found = false;
    const std::string_view user = pubsub::query_param(parser.query(), "user", found);
    if (found && pubsub::check_name(user).ok()) index_.set_user(sub, user);
  }
  counters_.subscribers.store(index_.subscribers(), std::memory_order_relaxed);
  return true;
}

void Worker::subscribe_at_connect(std::uint32_t slot) {
  const pubsub::ChannelList& list = *query_channels_;
  for (std::size_t i = 0; i < list.size() && conns_[slot].state == State::open; ++i) subscribe(slot, list[i]);
  publish_index_gauges();
}

bool Worker::allowed(std::uint32_t sub, std::string_view channel) const {
  const std::uint32_t p = subs_[sub].patterns;
  if (p == nil) return true;
  for (const std::string& pattern : pattern_sets_[p].patterns)
    if (pubsub::pattern_matches(pattern, channel)) return true;
  return false;
}

void Worker::subscribe(std::uint32_t slot, std::string_view channel) {
  const std::uint32_t sub = conns_[slot].sub;
  if (!allowed(sub, channel)) {
    answer_command_error(slot, pubsub::ErrorCode::forbidden_channel, "your token's channels claim does not allow this channel");
    return;
  }
  if (index_.subscribe(sub, channel) == SubscriptionIndex::Added::too_many) {
    answer_command_error(slot, pubsub::ErrorCode::too_many_channels, "subscription limit reached (max_subscriptions)");
    return;
  }
  counters_.subscribes_total.fetch_add(1, std::memory_order_relaxed);
  std::array<char, pubsub::answer_bytes_max> out;
  answer(slot, {out.data(), pubsub::build_subscribed(out, channel)});
}

// A complete client message on the pub/sub endpoint: a JSON command.
// Whatever is wrong with it is answered with an error frame; the
// connection stays open.
void Worker::on_command(std::uint32_t slot, ws::Opcode opcode, std::span<const std::uint8_t> payload) {
  if (opcode != ws::Opcode::text) {
    answer_command_error(slot, pubsub::ErrorCode::malformed_json, "commands are JSON text frames, not binary");
    return;
  }
  const pubsub::Command c =
      commands_->parse({reinterpret_cast<const char*>(payload.data()), payload.size()});
  if (!c.ok()) {
    answer_command_error(slot, c.error, c.message);
    return;
  }
  switch (c.type) {
    case pubsub::CommandType::subscribe: subscribe(slot, c.channel()); break;
    case pubsub::CommandType::unsubscribe: {
      // Unsubscribing from a channel one is not subscribed to is not an
      // error: the client's intent (not subscribed) holds either way.
      if (index_.unsubscribe(conns_[slot].sub, c.channel()))
        counters_.unsubscribes_total.fetch_add(1, std::memory_order_relaxed);
      std::array<char, pubsub::answer_bytes_max> out;
      answer(slot, {out.data(), pubsub::build_unsubscribed(out, c.channel())});
      break;
    }
    case pubsub::CommandType::ack:
      // Delivery is at most once per connection (nothing is stored to
      // redeliver), so an ack is counted and needs no answer.
      counters_.acks_total.fetch_add(1, std::memory_order_relaxed);
      break;
  }
  publish_index_gauges();
}

void Worker::answer_command_error(std::uint32_t slot, pubsub::ErrorCode code, std::string_view message) {
  counters_.command_errors_total.fetch_add(1, std::memory_order_relaxed);
  std::array<char, pubsub::answer_bytes_max> out;
  answer(slot, {out.data(), pubsub::build_error(out, code, message)});
}

// Queues one answer frame of our own (a copy: answers are rare and small).
void Worker::answer(std::uint32_t slot, std::span<const char> payload) {
  const std::uint32_t msg = new_msg();
  LocalMsg& m = msgs_[msg];
  std::array<std::uint8_t, ws::header_size_max> header{};
  const std::size_t hl = ws::encode_header(header, ws::Opcode::text, true, payload.size(), nullptr);
  m.owned = std::make_unique<std::uint8_t[]>(hl + payload.size());
  std::memcpy(m.owned.get(), header.data(), hl);
  std::memcpy(m.owned.get() + hl, payload.data(), payload.size());
  m.data = m.owned.get();
  m.len = static_cast<std::uint32_t>(hl + payload.size());
  enqueue(slot, msg, true);
  unref_msg(msg);  // the queue holds it now, or nobody does
}

// Appends `msg` to a connection's delivery queue: O(1), no copy.  A
// backpressured subscriber, or one that would overrun the worker's buffer
// budget, gets slow_consumer_policy instead.  False when not queued.
bool Worker::enqueue(std::uint32_t slot, std::uint32_t msg, bool is_answer) {
  Conn& k = conns_[slot];
  if (k.state != State::open || k.sub == nil) return false;
  SubState& q = subs_[k.sub];
  LocalMsg& m = msgs_[msg];
  const std::uint64_t cost = m.len + delivery_overhead_bytes;
  const bool over_budget = buffered_bytes_ + cost > buffered_budget_;
  if (q.book.backpressured || over_budget) {
    if (over_budget) counters_.buffer_budget_hits_total.fetch_add(1, std::memory_order_relaxed);
    if (!is_answer) counters_.delivery_drops_total.fetch_add(1, std::memory_order_relaxed);
    if (drop_slow_consumers_) {
      counters_.slow_consumer_drops_total.fetch_add(1, std::memory_order_relaxed);
    } else if (!q.book.slow_close_sent) {
      q.book.slow_close_sent = true;
      counters_.slow_consumer_closes_total.fetch_add(1, std::memory_order_relaxed);
      close_with(slot, static_cast<std::uint16_t>(config_.slow_consumer_close_code), "slow consumer");
    }
    return false;
  }
  const std::uint32_t d = take_slot(deliveries_, free_deliveries_);
  deliveries_[d] = Delivery{msg, nil};
  if (q.tail != nil) deliveries_[q.tail].next = d;
  else q.head = d;
  q.tail = d;
  ++q.count;
  q.bytes += cost;
  ++m.refs;
  if (!is_answer) counters_.deliveries_total.fetch_add(1, std::memory_order_relaxed);
  // A subscriber with output waiting is not idle: stall_timeout watches it
  // until the queue drains (a backpressured one is on backpressure_timeout).
  if (q.count == 1 && k.session == nil) note_progress(slot);
  account(slot);
  if (!(k.flags & f_send_in_flight)) pump_send(slot);
  return true;
}

std::span<const std::uint8_t> Worker::delivery_bytes(const SubState& q) const noexcept {
  const LocalMsg& m = msgs_[deliveries_[q.head].msg];
  return {m.data + q.offset, m.len - q.offset};
}

void Worker::delivery_sent(std::uint32_t slot, std::size_t bytes) {
  Conn& k = conns_[slot];
  if (k.sub == nil) return;
  SubState& q = subs_[k.sub];
  if (q.head == nil) return;
  q.offset += static_cast<std::uint32_t>(bytes);
  if (q.offset >= msgs_[deliveries_[q.head].msg].len) pop_delivery(q);
}

void Worker::pop_delivery(SubState& q) {
  const std::uint32_t d = q.head;
  const std::uint32_t msg = deliveries_[d].msg;
  q.head = deliveries_[d].next;
  if (q.head == nil) q.tail = nil;
  q.offset = 0;
  --q.count;
  q.bytes -= msgs_[msg].len + delivery_overhead_bytes;
  free_deliveries_.push_back(d);
  unref_msg(msg);
}

// Drops every queued delivery but the head when it is half sent (its rest
// must still go out, or the stream would be corrupt) or `keep_head` (a send
// of it is in flight).  The caller accounts.
void Worker::drop_deliveries(SubState& q, bool keep_head) {
  if (q.head == nil) return;
  const std::uint32_t keep = q.offset > 0 || keep_head ? q.head : nil;
  std::uint32_t d = keep != nil ? deliveries_[keep].next : q.head;
  while (d != nil) {
    const std::uint32_t next = deliveries_[d].next;
    const std::uint32_t msg = deliveries_[d].msg;
    --q.count;
    q.bytes -= msgs_[msg].len + delivery_overhead_bytes;
    free_deliveries_.push_back(d);
    unref_msg(msg);
    d = next;
  }
  q.head = q.tail = keep;
  if (keep != nil) deliveries_[keep].next = nil;
}

void Worker::release_subscriber(std::uint32_t slot) {
  Conn& k = conns_[slot];
  SubState& q = subs_[k.sub];
  // Released: no operation is in flight any more, so the head goes too.
  drop_deliveries(q, false);
  if (q.head != nil) pop_delivery(q);
  account(slot);
  if (q.book.backpressured) {
    counters_.backpressure_ms.record(rel_now() - q.book.backpressure_since_ms);
    counters_.backpressured_connections.store(--backpressured_, std::memory_order_relaxed);
  }
  release_patterns(q.patterns);
  q = SubState{};
  index_.detach(k.sub);
  k.sub = nil;
  publish_index_gauges();
}

std::uint32_t Worker::new_msg() {
  const std::uint32_t i = take_slot(msgs_, free_msgs_);
  msgs_[i].refs = 1;  // the creator's, dropped with unref_msg when it is done queuing
  return i;
}

void Worker::unref_msg(std::uint32_t msg) {
  LocalMsg& m = msgs_[msg];
  assert(m.refs > 0);
  if (--m.refs != 0) return;
  if (m.pub) m.pub->unref();
  m.pub = nullptr;
  m.owned.reset();
  free_msgs_.push_back(msg);
}

// Takes what publishers posted, counts each one's recipients here at once
// (the publisher is waiting for that count), and queues it for fan-out.
void Worker::drain_mailbox() {
  // Cleared before popping: a publication pushed after this point either is
  // popped below or finds the flag clear and wakes us again.
  mailbox_->wake_pending.store(false);
  while (fanout_count_ < fanouts_.size()) {
    Publication* p = mailbox_->pop();
    if (!p) break;
    std::uint64_t recipients = 0;
    if (p->target == Publication::Target::channel) {
      const std::uint32_t c = index_.find_channel(p->name);
      if (c != nil) recipients = index_.channel_subscribers(c);
    } else {
      const std::uint32_t u = index_.find_user(p->name);
      if (u != nil) recipients = index_.user_connections(u);
    }
    p->counted(recipients);
    if (recipients == 0) {
      p->unref();
      continue;
    }
    fanouts_[(fanout_head_ + fanout_count_) % fanouts_.size()] = Fanout{p, nil, false};
    ++fanout_count_;
  }
  counters_.mailbox_depth.store(mailbox_->depth() + fanout_count_, std::memory_order_relaxed);
}

// Queues deliveries, oldest publication first, at most fanout_batch per loop
// turn: a publish to a million subscribers takes many turns, and the
// connections' I/O runs between them.
void Worker::run_fanout() {
  std::uint32_t budget = config_.fanout_batch;
  while (fanout_count_ > 0 && budget > 0) {
    Fanout& f = fanouts_[fanout_head_];
    if (!f.started) {
      f.started = true;
      f.msg = new_msg();
      LocalMsg& m = msgs_[f.msg];
      m.pub = f.pub;  // the worker's reference moves to the message
      m.data = f.pub->frame.data();
      m.len = static_cast<std::uint32_t>(f.pub->frame.size());
      if (f.pub->target == Publication::Target::user) {
        // A user's devices on this worker: a handful, done in one go.
        const std::uint32_t u = index_.find_user(f.pub->name);
        if (u != nil) {
          index_.for_each_of_user(u, [&](std::uint32_t sub) {
            enqueue(index_.slot_of(sub), f.msg, false);
            if (budget > 0) --budget;
          });
        }
        finish_fanout();
        continue;
      }
      const std::uint32_t c = index_.find_channel(f.pub->name);
      if (c == nil) {
        finish_fanout();
        continue;
      }
      index_.begin_walk(c);
    }
    for (; budget > 0; --budget) {
      const std::uint32_t sub = index_.next();
      if (sub == nil) break;
      enqueue(index_.slot_of(sub), f.msg, false);
    }
    if (budget == 0) break;  // more next turn
    index_.end_walk();
    finish_fanout();
  }
}

void Worker::finish_fanout() {
  Fanout& f = fanouts_[fanout_head_];
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const std::uint64_t now_ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<std::uint64_t>(ts.tv_nsec);
  counters_.fanout_ms.record((now_ns - std::min(now_ns, f.pub->published_ns)) / 1'000'000);
  counters_.fanouts_total.fetch_add(1, std::memory_order_relaxed);
  unref_msg(f.msg);  // the walk's reference; queued deliveries hold theirs
  f = Fanout{};
  fanout_head_ = (fanout_head_ + 1) % fanouts_.size();
  --fanout_count_;
  counters_.mailbox_depth.store(mailbox_->depth() + fanout_count_, std::memory_order_relaxed);
}

// With eventfd wake-ups, a read stays armed on this worker's eventfd.
void Worker::arm_mailbox_read() {
  if (mailbox_read_armed_ || mailbox_->event_fd < 0 || draining_) return;
  if (ring_.read_fd(mailbox_->event_fd, eventfd_value_, {op_mailbox, 0, 1})) mailbox_read_armed_ = true;
}

std::uint32_t Worker::intern_patterns(const jwt::Claims& claims) {
  std::string key;
  for (std::size_t i = 0; i < claims.pattern_count(); ++i) {
    key += claims.pattern(i);
    key += ',';
  }
  const auto [it, inserted] = pattern_ids_.try_emplace(key, 0);
  if (inserted) {
    const std::uint32_t id = take_slot(pattern_sets_, free_pattern_sets_);
    PatternSet& set = pattern_sets_[id];
    set.key = key;
    for (std::size_t i = 0; i < claims.pattern_count(); ++i) set.patterns.emplace_back(claims.pattern(i));
    it->second = id;
  }
  ++pattern_sets_[it->second].refs;
  return it->second;
}

void Worker::release_patterns(std::uint32_t id) {
  if (id == nil) return;
  PatternSet& set = pattern_sets_[id];
  if (--set.refs != 0) return;
  pattern_ids_.erase(set.key);
  set = PatternSet{};
  free_pattern_sets_.push_back(id);
}

void Worker::publish_index_gauges() {
  counters_.subscribers.store(index_.subscribers(), std::memory_order_relaxed);
  counters_.subscriptions.store(index_.subscriptions(), std::memory_order_relaxed);
  counters_.channels.store(index_.channels(), std::memory_order_relaxed);
  counters_.index_bytes.store(index_.memory_bytes() + subs_.capacity() * sizeof(SubState) +
                                  deliveries_.capacity() * sizeof(Delivery) + msgs_.capacity() * sizeof(LocalMsg),
                              std::memory_order_relaxed);
}

void Worker::begin_drain() {
  draining_ = true;
  drain_deadline_ms_ = now_ms_ + config_.drain_timeout_ms;
  if (accept_armed_) ring_.cancel_tag({op_accept, 0, 0}, {op_accept_cancel, 0, 0});
  accept_armed_ = false;
  for (std::uint32_t i = 0; i < peer_accepts_.size(); ++i)
    if (peer_accepts_[i].armed) ring_.cancel_tag({op_accept_peer, 0, i}, {op_accept_cancel, 0, 0});
  ring_.submit();
  // No new connections: this worker's listener goes away; the kernel resets
  // whatever waits in its backlog.
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
  }
  for (std::uint32_t slot = 0; slot < slots_; ++slot) {
    Conn& k = conns_[slot];
    switch (k.state) {
      case State::queued:
        timer_remove(slot);
        --queue_depth_;
        begin_handshake(slot);
        answer_const(slot, Const::shutdown_http, Refusal::shutdown);
        break;
      case State::handshake:
        answer_const(slot, Const::shutdown_http, Refusal::shutdown);
        break;
      case State::open:
        if (k.session == nil && k.aux == nil && k.pending_const == Const::none) {
          // Idle (nearly all of them): a constant close frame, no session.
          k.pending_const = Const::shutdown_ws;
          k.state = State::ws_closing;
          timer_add(slot, TimerList::closing, config_.close_timeout_ms);
          pump_send(slot);
          break;
        }
        if (!attach_session(slot)) {
          teardown(slot);
          break;
        }
        sessions_[k.session].queue_close(1001, "server shutting down");
        after_ws_progress(slot);
        break;
      default:
        break;
    }
  }
}

}  // namespace

void run_worker(Shared& shared, std::uint32_t id, int listen_fd, std::atomic<int>& ready, std::string& error) {
  auto worker = std::make_unique<Worker>(shared, id, listen_fd);
  if (!worker->start(error)) {
    ready.store(-1);
    ready.notify_all();
    return;
  }
  ready.store(1);
  ready.notify_all();
  worker->run();
}

}  // namespace rg::server
