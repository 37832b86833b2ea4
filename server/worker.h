// A worker: one thread, one io_uring, one listener, one slab of connection
// records.  Workers share nothing on the data path; the only cross-worker
// reads are the relaxed counter sums that admission uses.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/admission.h"
#include "server/budgets.h"
#include "server/config.h"
#include "server/fanout.h"

namespace rg::server {

// Per-worker counters: single writer (the worker), any reader (relaxed).
struct alignas(64) WorkerCounters {
  std::atomic<std::uint64_t> open_connections{0};  // upgraded, not yet released
  std::atomic<std::uint64_t> live_slots{0};        // table slots in use (any state)
  std::atomic<std::uint64_t> accepted_total{0};
  std::atomic<std::uint64_t> upgraded_total{0};
  // Handshakes that did not end in an upgrade, by reason (the 1013 of a
  // session pool running dry after the upgrade is busy_closes_total).
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(Refusal::count)> refusals{};
  std::atomic<std::uint64_t> busy_closes_total{0};         // 1013: no session for an upgraded connection
  std::atomic<std::uint64_t> protocol_closes_total{0};     // we closed with 1002/1007/1009
  std::atomic<std::uint64_t> messages_in_total{0};
  std::atomic<std::uint64_t> accept_errors_total{0};
  // Outbound buffering (gauges are this worker's totals, updated by delta).
  std::atomic<std::uint64_t> buffered_bytes{0};
  std::atomic<std::uint64_t> messages_pending{0};
  std::atomic<std::uint64_t> buffered_max_connection_bytes{0};  // high-water of one connection
  std::atomic<std::uint64_t> backpressured_connections{0};
  std::atomic<std::uint64_t> backpressure_activations_total{0};
  std::atomic<std::uint64_t> slow_consumer_closes_total{0};
  std::atomic<std::uint64_t> slow_consumer_drops_total{0};
  std::atomic<std::uint64_t> buffer_budget_hits_total{0};  // messages that would have exceeded max_buffered_bytes
  std::atomic<std::uint64_t> segment_bytes{0};             // the segment pool's memory (held + cached)
  std::atomic<std::uint64_t> segments_live{0};             // segments held by sessions
  std::atomic<std::uint64_t> segment_allocations_total{0}; // segments the pool had to allocate
  std::atomic<std::uint64_t> pings_sent_total{0};
  std::atomic<std::uint64_t> pongs_received_total{0};      // reads of pongs consumed without a session
  std::atomic<std::uint64_t> heartbeat_timeouts_total{0};  // nothing for pong_timeout after a ping
  std::atomic<std::uint64_t> idle_closes_total{0};         // idle_timeout
  std::atomic<std::uint64_t> queued_total{0};          // connections that waited for an accept_rate token
  std::atomic<std::uint64_t> accept_queue_depth{0};    // waiting now
  std::atomic<std::uint64_t> table_slots{0};          // set once at start
  std::atomic<std::uint64_t> loop_heartbeat_ms{0};    // CLOCK_MONOTONIC ms of the last loop turn
  LatencyHistogram handshake_ms;   // accept (or leaving the accept queue) to 101 sent for
  LatencyHistogram queue_wait_ms;  // time in the accept queue, for those that left it with a token
  LatencyHistogram backpressure_ms;  // how long each backpressure episode lasted
  // Pub/sub (gauges are this worker's, set as they change)
  std::atomic<std::uint64_t> subscribers{0};       // connections on the pub/sub endpoint
  std::atomic<std::uint64_t> subscriptions{0};
  std::atomic<std::uint64_t> channels{0};          // channels with a subscriber here
  std::atomic<std::uint64_t> index_bytes{0};       // memory of the subscription index
  std::atomic<std::uint64_t> subscribes_total{0};
  std::atomic<std::uint64_t> unsubscribes_total{0};
  std::atomic<std::uint64_t> command_errors_total{0};  // error frames answered to commands
  std::atomic<std::uint64_t> acks_total{0};
  std::atomic<std::uint64_t> fanouts_total{0};     // publications this worker fanned out
  std::atomic<std::uint64_t> deliveries_total{0};  // messages queued to a recipient
  std::atomic<std::uint64_t> delivery_drops_total{0};  // not queued: slow consumer (drop policy) or budget
  std::atomic<std::uint64_t> mailbox_depth{0};
  LatencyHistogram fanout_ms;  // publish to the last recipient's send queued on this worker

  [[nodiscard]] std::uint64_t refused(Refusal r) const noexcept {
    return refusals[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t refused_total() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& r : refusals) sum += r.load(std::memory_order_relaxed);
    return sum;
  }
};

// The publish API's counters: one writer (the admin thread).
enum class PublishRefusal : std::uint8_t { bad_request, unauthorized, too_large, mailbox_full, count };
[[nodiscard]] const char* publish_refusal_name(PublishRefusal r) noexcept;
struct PublishCounters {
  std::atomic<std::uint64_t> publishes_total{0};    // accepted publications (channel or user)
  std::atomic<std::uint64_t> user_sends_total{0};   // of which to a user
  std::atomic<std::uint64_t> body_bytes_total{0};
  std::atomic<std::uint64_t> recipients_total{0};   // summed over the answers
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(PublishRefusal::count)> refused{};
};

// What all workers read and nobody writes after start-up (except `stopping`).
struct Shared {
  Config config;
  std::uint32_t table_slots_per_worker = 0;
  std::uint32_t reserved_slots_per_worker = 0;  // the top of each table, for refusals
  std::uint64_t max_connections = 0;  // effective limit, never 0 here
  std::vector<std::unique_ptr<WorkerCounters>> counters;
  std::atomic<bool> stopping{false};
  KernelBudgets kernel;  // sampled by the main thread once a second
  PerIpCounts per_ip;    // enabled when config.per_ip_limit > 0
  std::uint64_t max_buffered_bytes = 0;  // effective (0 in the config means a quarter of RAM)
  // The ephemeral port range (net.ipv4.ip_local_port_range), for the
  // server's own outbound connections; none are made yet, so `used` stays 0
  // until a feature that connects out (e.g. a broker) counts them here.
  std::uint64_t ephemeral_ports_limit = 0;
  std::atomic<std::uint64_t> outbound_connections{0};
  // Pub/sub: one mailbox per worker, the JWT key, how publishers wake workers.
  std::vector<std::unique_ptr<Mailbox>> mailboxes;
  std::string jwt_key;
  std::string api_token;
  bool wake_msg_ring = false;  // IORING_OP_MSG_RING (else the eventfd)
  PublishCounters publish;

  [[nodiscard]] std::uint64_t buffered_bytes() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& c : counters) sum += c->buffered_bytes.load(std::memory_order_relaxed);
    return sum;
  }

  [[nodiscard]] std::uint64_t open_connections() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& c : counters) sum += c->open_connections.load(std::memory_order_relaxed);
    return sum;
  }
};

// Runs worker `id` until shutdown.  `listen_fd` is this worker's
// SO_REUSEPORT socket.  `ready` is set to 1 once the ring is up, or to -1 with
// `error` filled if the worker could not start.
void run_worker(Shared& shared, std::uint32_t id, int listen_fd, std::atomic<int>& ready, std::string& error);

}  // namespace rg::server
