// The figures a worker publishes for the admin thread (/metrics, /status)
// and for admission across workers.  Every row has one writer.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "base/counter.h"
#include "server/admission.h"
#include "server/conn.h"

namespace rg::server {

// Why a TLS connection failed (the `reason` of ws_tls_failures_total).
enum class TlsFailure : std::uint8_t {
  not_tls,       // the first bytes were no TLS record (garbage)
  plain_http,    // an HTTP request on the TLS port (answered 400 in plaintext)
  handshake,     // the handshake failed: no shared version, suite or group, a bad message (alert sent)
  bad_record,    // a record failed to decrypt or authenticate (bad_record_mac sent)
  protocol,      // any other TLS protocol error after the handshake (alert sent)
  truncated,     // the peer closed the TCP connection mid-handshake
  no_memory,     // BoringSSL could not make an SSL (out of memory)
  input_overrun, // more than 64 KiB arrived while every record buffer was in use
  count,
};
[[nodiscard]] const char* tls_failure_name(TlsFailure f) noexcept;

// TLS figures of one worker (single writer).
struct TlsCounters {
  // ws_tls_handshakes_total{result="ok",version,resumed}: [TLS 1.2, 1.3][full, resumed].
  std::array<std::array<base::Counter, 2>, 2> handshakes_ok{};
  std::array<base::Counter, static_cast<std::size_t>(TlsFailure::count)> failures{};
  base::Counter refused_total;        // closed with an alert at accept: tls_handshakes_max in flight
  base::Counter close_notify_total;   // the peer said close_notify
  base::Counter handshakes_in_flight;
  base::Counter connections;          // TLS connections with an SSL (handshaking or established)
  base::Counter record_buffers_in_use;
  base::Counter held_bytes;           // charged to the buffered-bytes budget (server/tls_stream.h)
  LatencyHistogram handshake_ms;      // first ciphertext byte to handshake done
};

// Per-worker counters: single writer (the worker), any reader (relaxed):
// base::Counter, a plain load and store.  open_connections alone is a
// std::atomic that workers fetch_add, since admission compares its sum
// across workers right after adding (see handshake.cpp).
struct alignas(64) WorkerCounters {
  std::atomic<std::uint64_t> open_connections{0};  // upgraded, not yet released; fetch_add: see handshake.cpp
  base::Counter live_slots;        // table slots in use (any state)
  base::Counter accepted_total;
  base::Counter upgraded_total;
  // Handshakes that did not end in an upgrade, by reason (the 1013 of a
  // session pool running dry after the upgrade is busy_closes_total).
  std::array<base::Counter, static_cast<std::size_t>(Refusal::count)> refusals{};
  TlsCounters tls;
  // PROXY v2 headers read from balancers (proxy_protocol_from): [LOCAL, PROXY].
  std::array<base::Counter, 2> proxy_headers_total{};
  base::Counter busy_closes_total;         // 1013: no session for an upgraded connection
  base::Counter protocol_closes_total;     // we closed with 1002/1007/1009
  base::Counter messages_in_total;
  base::Counter accept_errors_total;
  // Outbound buffering (gauges are this worker's totals, updated by delta).
  base::Counter buffered_bytes;
  base::Counter messages_pending;
  base::Counter buffered_max_connection_bytes;  // high-water of one connection
  base::Counter backpressured_connections;
  base::Counter backpressure_activations_total;
  base::Counter slow_consumer_closes_total;
  base::Counter slow_consumer_drops_total;
  base::Counter buffer_budget_hits_total;  // messages that would have exceeded max_buffered_bytes
  base::Counter inbound_bytes;             // of buffered_bytes: messages being reassembled
  base::Counter inbound_refusals_total;    // messages refused (1013): no room in the budget for them
  base::Counter message_timeouts_total;    // mid-message connections closed for too slow progress (1008)
  base::Counter segment_bytes;             // segments held by connections
  base::Counter segment_cache_bytes;       // freed segments kept for reuse
  base::Counter segments_live;             // segments held by sessions
  base::Counter segment_allocations_total; // segments the pool had to allocate
  base::Counter pings_sent_total;
  base::Counter pongs_received_total;      // reads of pongs consumed without a session
  base::Counter heartbeat_timeouts_total;  // nothing for pong_timeout after a ping
  base::Counter idle_closes_total;         // idle_timeout
  base::Counter queued_total;          // connections that waited for an accept_rate token
  base::Counter accept_queue_depth;    // waiting now
  base::Counter table_slots;          // set once at start
  base::Counter loop_heartbeat_ms;    // CLOCK_MONOTONIC ms of the last loop turn
  LatencyHistogram handshake_ms;   // accept (or leaving the accept queue) to 101 sent for
  LatencyHistogram queue_wait_ms;  // time in the accept queue, for those that left it with a token
  LatencyHistogram backpressure_ms;  // how long each backpressure episode lasted
  // Pub/sub (gauges are this worker's, set as they change)
  base::Counter subscribers;       // connections on the pub/sub endpoint
  base::Counter subscriptions;
  base::Counter channels;          // channels with a subscriber here
  base::Counter index_bytes;       // memory of the subscription index
  base::Counter subscribes_total;
  base::Counter unsubscribes_total;
  base::Counter command_errors_total;  // error frames answered to commands
  base::Counter acks_total;
  base::Counter fanouts_total;     // publications this worker fanned out
  base::Counter deliveries_total;  // messages queued to a recipient
  base::Counter delivery_drops_total;  // not queued: slow consumer (drop policy) or budget
  base::Counter mailbox_depth;
  LatencyHistogram fanout_ms;  // publish to the last recipient's send queued on this worker
  // Pub/sub structures sized at start-up (max_deliveries), and refusals when
  // they ran out.
  base::Counter deliveries_live;
  base::Counter deliveries_exhausted_total;  // a delivery or answer not queued: every queue entry in use
  // Completions with an errno no handler expects, by op and errno (the
  // `op` and `errno` labels of ws_unexpected_errors_total).
  static constexpr std::size_t errno_max = 134;  // errnos above share the last row
  std::array<std::array<base::Counter, errno_max + 1>, op_count_> unexpected_errors{};

  [[nodiscard]] std::uint64_t refused(Refusal r) const noexcept {
    return refusals[static_cast<std::size_t>(r)].load();
  }
  [[nodiscard]] std::uint64_t refused_total() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& r : refusals) sum += r.load();
    return sum;
  }
};

// The publish API's counters: one writer (the admin thread).
enum class PublishRefusal : std::uint8_t {
  bad_request, unauthorized, too_large, mailbox_full,
  backplane_down,     // 503: Redis unreachable, nothing published
  backplane_timeout,  // 504: Redis took the message and did not answer in time: outcome unknown
  count
};
[[nodiscard]] const char* publish_refusal_name(PublishRefusal r) noexcept;
struct PublishCounters {
  base::Counter publishes_total;    // accepted publications (channel or user)
  base::Counter user_sends_total;   // of which to a user
  base::Counter body_bytes_total;
  base::Counter recipients_total;   // summed over the answers
  std::array<base::Counter, static_cast<std::size_t>(PublishRefusal::count)> refused{};
};

// The Redis backplane's figures (control/backplane.h).  One writer: the
// backplane thread.
enum class BackplaneState : std::uint8_t { off, down, up };
struct BackplaneCounters {
  std::atomic<BackplaneState> state{BackplaneState::off};
  base::Counter connects_total;          // connections to Redis made (the first and every reconnection)
  base::Counter connect_failures_total;  // attempts that failed (each followed by a backoff)
  base::Counter subscriptions;           // names subscribed in Redis now, as Redis confirmed them
  base::Counter names;                   // names this node's clients hold (what it asks Redis for)
  base::Counter messages_total;          // messages from Redis posted to the workers
  base::Counter dropped_total;           // messages from Redis a mailbox full for 2 s refused (lost: counted, logged)
  base::Counter mailbox_waits_total;     // ms spent waiting for a full mailbox before a message from Redis went in
  base::Counter malformed_total;         // messages on our keys not in our format (another writer?)
  base::Counter primaries;               // Redis primaries connected now (1 for one Redis; 0 while down)
  base::Counter slots_moved_total;       // times a cluster said slots moved (MOVED, or a name unsubscribed by Redis)
};

}  // namespace rg::server
