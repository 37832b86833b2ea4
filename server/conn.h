// The connection record: what every connection costs, idle or not, and the
// small vocabulary the worker's rooms share about it (its state, flags,
// timer, endpoint and pending constant answer).  Nothing here does anything.
#pragma once

#include <array>
#include <cstdint>

#include "proto/http_upgrade.h"
#include "proto/proxy_protocol.h"

namespace rg::server {

inline constexpr std::uint32_t nil = UINT32_MAX;

// The tag op of every operation a worker submits: the loop's dispatch
// switches on these (see HACKING.md, "The data path, op by op").
enum Op : std::uint8_t {
  op_accept = 1, op_recv, op_send, op_shutdown, op_cancel, op_close, op_accept_cancel,
  op_accept_reserved,  // a single accept into a reserved slot, to refuse explicitly
  op_accept_peer,      // a single accept that reports the peer's address (per_ip_limit)
  op_count_,           // ops below this one are counted by ws_unexpected_errors_total
  op_mailbox = 32,     // a publisher woke us (MSG_RING), or the eventfd read completed
};

[[nodiscard]] const char* op_name(std::uint8_t op) noexcept;

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
  f_aux_parser = 1 << 7,         // aux names a parser slot; otherwise a response slot
  f_close_after_send = 1 << 8,   // the answer is a close reply: tear down once it is out
  f_read_paused = 1 << 9,        // backpressured: recv cancelled until the buffer drains
  f_const_close_sent = 1 << 10,  // a constant close frame went out: waiting for the peer's close
  f_ping_outstanding = 1 << 11,  // a ping went out at ping_sent_ms and nothing has been received since
  f_send_delivery = 1 << 12,     // the send in flight is from the pub/sub delivery queue
  f_tls = 1 << 13,               // the connection came in on tls_listen: its byte stream is TLS
  f_send_stream = 1 << 14,       // the send in flight carries only the byte stream's own output
  f_send_raw = 1 << 15,          // the send in flight is a plaintext TLS alert (refused before its handshake)
};

// What an upgraded connection is: which handler gets its messages and how a
// publication is framed for it.  Set at the upgrade, never changed.
enum class Endpoint : std::uint8_t {
  none = 0,  // not upgraded (yet)
  echo,      // echo_path: every message comes back
  pubsub,    // pubsub_path: JSON commands in, deliveries out
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

// Answers built once at start-up and sent by any connection from there.
enum class Const : std::uint8_t {
  none, busy_http, shutdown_http, busy_ws, shutdown_ws, per_ip_http, rate_http, proxy_http, ping_ws, idle_ws,
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
  std::uint8_t ops;           // operations in flight (multishot recv counts once; never more than 6)
  Endpoint endpoint;
};
// tooling/capacity_model.cpp checks this size against the one it plans with.
inline constexpr std::size_t conn_record_bytes = 44;
static_assert(sizeof(Conn) == conn_record_bytes,
              "the connection record is the per-connection memory budget: keep it 44 bytes");
// With tls_listen on, every table slot also has a row in its worker's TLS
// table (TlsStream::Slot, which static_asserts this size; the capacity model
// plans with it).
inline constexpr std::size_t tls_slot_bytes = 80;

// Parse state for a request, or a balancer's PROXY header, that did not
// arrive in one piece.  Those that do (nearly all) are parsed in the
// worker's scratch parsers and never hold one.
struct ParseSlot {
  explicit ParseSlot(proto::http::Limits limits) : parser(limits) {}
  proto::http::UpgradeParser parser;
  proto::proxy::Parser proxy;
};

// An HTTP answer (101 or an error), or a close reply, waiting for its send
// to complete.
struct Response {
  std::array<char, proto::http::response_bytes_max> bytes;
  std::uint16_t len;
  std::uint16_t sent;
};

}  // namespace rg::server
