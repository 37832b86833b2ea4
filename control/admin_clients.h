// The admin listener's connections and the rules that keep it answerable
// under a flood of idle or trickling clients (docs/operations.md, "The
// admin listener"):
//
//  - Deadlines run from the start of a request (its accept, or its first
//    byte on a kept-alive connection), never from the last byte: a trickle
//    cannot hold a slot.  A body gets request_timeout plus its size at
//    body_bytes_per_s_min.
//  - One client address holds at most per_ip_max connections (429 beyond).
//  - At most clients_max - health_reserve connections may be committed to
//    a request other than a health check (a body arriving, an answer being
//    sent); such a request beyond that gets 503.  So some slots are always
//    uncommitted.
//  - A newcomer always gets a slot: a free one, or the one of the
//    uncommitted connection (no request under way, a head still arriving,
//    an answer held back) that has waited longest, which is closed.
//    A health check needs one round trip, so it is served unless hundreds
//    of connections arrive while its request is in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "server/peer_address.h"
#include "proto/http_request.h"

namespace rg::server {

struct AdminLimits {
  std::uint32_t clients_max = 256;              // connections held at once
  std::uint32_t health_reserve = 16;            // slots no request but a health check may hold
  std::uint32_t per_ip_max = 32;                // connections per client address; 0 = no limit
  std::uint64_t request_timeout_ms = 10'000;    // start of a request to its end (head and body)
  std::uint64_t idle_timeout_ms = 60'000;       // a kept-alive connection between requests
  std::uint64_t body_bytes_per_s_min = 256 * 1024;  // a body's allowance on top of request_timeout_ms

  // The deadline of a request that began at `start_ms` and carries a body
  // of `body_bytes`.
  [[nodiscard]] std::uint64_t request_deadline_ms(std::uint64_t start_ms, std::uint64_t body_bytes) const noexcept {
    return start_ms + request_timeout_ms + body_bytes * 1000 / body_bytes_per_s_min;
  }
};

enum class AdminPhase : std::uint8_t {
  waiting,    // kept alive between requests, no byte of the next one yet
  head,       // a request has begun (accepted, or its first byte came); its head is incomplete
  body,       // the head is complete, its body is arriving
  answering,  // an answer is being sent
  held,       // an answer is held back until send_after_ms (a throttled token)
};

// Committed connections are the ones a newcomer may not take the slot of.
[[nodiscard]] constexpr bool committed(AdminPhase p) noexcept {
  return p == AdminPhase::body || p == AdminPhase::answering;
}

struct AdminClient {
  int fd = -1;
  PeerAddress peer;
  AdminPhase phase = AdminPhase::head;
  bool health = false;       // the request under way is GET /healthz or /readyz
  bool close_after = false;  // close once `out` is sent
  std::uint64_t since_ms = 0;     // when the current request (or wait) began
  std::uint64_t deadline_ms = 0;  // closed at this time, whatever it is doing
  std::uint64_t send_after_ms = 0;  // held: `out` waits until then
  proto::http::RequestParser parser;  // resumes where the last read stopped
  std::string in;
  std::string out;
  std::size_t out_sent = 0;
};

// What to do with a connection just accepted from `peer`.
struct Admission {
  enum class Kind : std::uint8_t {
    admit,   // a slot is free
    evict,   // take the slot of clients[victim], closing it
    per_ip,  // the address holds per_ip_max connections: 429
    full,    // every slot is committed: close (not expected: the reserve keeps slots uncommitted)
  };
  Kind kind;
  std::size_t victim = 0;
};
[[nodiscard]] Admission admit(const std::vector<AdminClient>& clients, const PeerAddress& peer,
                              const AdminLimits& limits) noexcept;

// Whether a request other than a health check may commit a slot now (else 503).
[[nodiscard]] bool general_slot_free(const std::vector<AdminClient>& clients, const AdminLimits& limits) noexcept;

}  // namespace rg::server
