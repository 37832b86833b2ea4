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
#include "server/counters.h"
#include "server/budgets.h"
#include "config/config.h"
#include "server/fanout.h"
#include "server/interest.h"
#include "server/peer_address.h"
#include "server/tls_context.h"

namespace rg::server {

// What all workers read and nobody writes after start-up (except `stopping`).
struct Shared {
  Config config;
  std::uint32_t table_slots_per_worker = 0;
  std::uint32_t reserved_slots_per_worker = 0;  // the top of each table, for refusals
  std::uint64_t max_connections = 0;  // effective limit, never 0 here
  std::vector<std::unique_ptr<WorkerCounters>> counters;
  std::atomic<bool> stopping{false};
  std::atomic<bool> leaving{false};  // a stop signal arrived: /readyz is 503 through drain_grace, before stopping
  KernelBudgets kernel;  // sampled by the main thread once a second
  PerIpCounts per_ip;    // enabled when config.per_ip_limit > 0
  std::vector<AddressRange> proxy_from;  // proxy_protocol_from, parsed: balancers whose PROXY header is read
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
  // TLS (tls_listen): the context new connections' SSLs are made from,
  // replaced by reloads; null when TLS is off.
  TlsContexts* tls = nullptr;
  std::atomic<std::int64_t> tls_not_after_s{0};  // the soonest certificate notAfter (the expiry gauge)
  base::Counter tls_reloads_ok;                 // SIGHUP reloads (main thread)
  base::Counter tls_reloads_failed;
  PublishCounters publish;
  // The Redis backplane (backplane = redis://...): the names workers report
  // for it to subscribe to, and its state; null/off when there is none.
  Interest* interest = nullptr;
  BackplaneCounters backplane;

  [[nodiscard]] std::uint64_t buffered_bytes() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& c : counters) sum += c->buffered_bytes.load() + c->tls.held_bytes.load();
    return sum;
  }

  [[nodiscard]] std::uint64_t open_connections() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& c : counters) sum += c->open_connections.load(std::memory_order_relaxed);
    return sum;
  }
};

// A worker's SO_REUSEPORT sockets: plain (listen) and TLS (tls_listen);
// -1 when that listener is off.
struct Listeners {
  int plain = -1;
  int tls = -1;
};

// Runs worker `id` until shutdown.  `ready` is set to 1 once the ring is up,
// or to -1 with `error` filled if the worker could not start.
void run_worker(Shared& shared, std::uint32_t id, Listeners listeners, std::atomic<int>& ready, std::string& error);

}  // namespace rg::server
