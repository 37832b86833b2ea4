// Admission bookkeeping shared by the workers and the admin listener: why a
// handshake was refused, latency histograms, and the per-client-IP counts.
// Every structure here has one writer per row (a worker) and any number of
// readers that sum rows with relaxed loads.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "base/counter.h"

namespace rg::server {

// Why a connection did not become a WebSocket.  The names are the `reason`
// label of ws_handshake_failures_total.
enum class Refusal : std::uint8_t {
  bad_request,           // 400: malformed request or missing/invalid upgrade headers
  not_found,             // 404: no endpoint at that path
  method_not_allowed,    // 405
  timeout,               // 408: request not complete within handshake_timeout
  too_large,             // 414/431: request line or headers over their limits
  upgrade_required,      // 426: not a WebSocket upgrade, or an unsupported version
  http_version,          // 505
  max_connections,       // 503: max_connections reached
  table_full,            // 503 from a reserved table slot
  kernel_budget,         // 503: a kernel budget at kernel_refuse_percent
  per_ip,                // 429: per_ip_limit reached
  accept_queue_full,     // 503: accept_rate exceeded and the queue is full
  accept_queue_timeout,  // 503: waited accept_queue_timeout for a token
  busy,                  // 503: a pool sized at start-up was empty
  buffered_bytes,        // 503: buffered outbound bytes at kernel_refuse_percent of max_buffered_bytes
  shutdown,              // 503: the server is draining
  tls_handshakes,        // TLS alert internal_error at accept: tls_handshakes_max handshakes in flight
  unauthorized,          // 401: pub/sub with auth = jwt and no valid token
  proxy_header,          // 400 (TLS: alert): a balancer's PROXY header was malformed
  proxy_untrusted,       // 400 (TLS: alert): a PROXY header from an address not in proxy_protocol_from
  other,                 // any other status
  count
};

[[nodiscard]] const char* refusal_name(Refusal r) noexcept;
[[nodiscard]] Refusal refusal_for_status(std::uint16_t status) noexcept;

// What admission at the upgrade reads: figures summed over workers and the
// limits they are held to.  A worker fills it in after counting its
// newcomer in open_connections (see handshake.cpp for why that order).
struct UpgradeFigures {
  bool kernel_refuse = false;           // a kernel budget reached kernel_refuse_percent
  std::uint64_t buffered_bytes = 0;     // outbound and inbound bytes held, all workers
  std::uint64_t max_buffered_bytes = 0;
  std::uint32_t refuse_percent = 95;    // kernel_refuse_percent: also the buffered-bytes line
  std::uint64_t open_connections = 0;   // all workers, the newcomer included
  std::uint64_t max_connections = 0;
};

// Admission at the upgrade: why this upgrade must be refused (503), or
// nothing.  Pure: the same figures always give the same answer.
[[nodiscard]] std::optional<Refusal> admit_upgrade(const UpgradeFigures& f) noexcept;

// Cumulative-bucket latency histogram in milliseconds, Prometheus style.
struct LatencyHistogram {
  static constexpr std::array<std::uint32_t, 14> bounds_ms = {1,   2,    5,    10,   25,    50,    100,
                                                              250, 500, 1000, 2500, 5000, 10000, 30000};
  std::array<base::Counter, bounds_ms.size() + 1> buckets{};  // last one is +Inf
  base::Counter count;
  base::Counter sum_ms;

  // Single writer.
  void record(std::uint64_t ms) noexcept {
    std::size_t i = 0;
    while (i < bounds_ms.size() && ms > bounds_ms[i]) ++i;
    buckets[i].add();
    count.add();
    sum_ms.add(ms);
  }
};

// Connections per client IP across all workers, as a count-min sketch: each
// worker owns two rows of `buckets` counters; an address maps to one bucket
// per row; its estimate is the smaller of the two column sums over workers.
// The estimate never under-counts, so the limit is never exceeded; it
// over-counts only when an address shares both buckets with busier ones.
// Memory is fixed at start-up: workers x 2 x buckets x 4 bytes.
class PerIpCounts {
 public:
  static constexpr std::uint32_t buckets = 1u << 15;
  static constexpr std::uint32_t none = UINT32_MAX;  // "not counted"

  void init(std::uint32_t workers);
  [[nodiscard]] bool enabled() const noexcept { return counts_ != nullptr; }

  // The two bucket indices of an address packed in 32 bits (never `none`).
  // IPv4 and IPv4-mapped IPv6 addresses are the same client.  absl::Hash is
  // seeded per process, so addresses cannot be chosen offline to collide.
  [[nodiscard]] static std::uint32_t key(const sockaddr_storage& addr) noexcept;

  // Counts the address on `worker`'s rows, then returns the estimate with it
  // included.  Adding before reading means two workers admitting the same
  // address at once can both see the other: the race costs a spare refusal,
  // never an extra connection.
  std::uint32_t add(std::uint32_t worker, std::uint32_t key) noexcept;
  void remove(std::uint32_t worker, std::uint32_t key) noexcept;
  [[nodiscard]] std::uint32_t estimate(std::uint32_t key) const noexcept;

 private:
  std::atomic<std::uint32_t>& at(std::uint32_t worker, std::uint32_t row, std::uint32_t bucket) const noexcept {
    return counts_[(std::size_t{worker} * 2 + row) * buckets + bucket];
  }
  std::unique_ptr<std::atomic<std::uint32_t>[]> counts_;
  std::uint32_t workers_ = 0;
};

}  // namespace rg::server
