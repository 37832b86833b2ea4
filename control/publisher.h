// The publish API, the local delivery source: turns one POST
// /publish/{channel} or /users/{user}/send into a publication (named, given
// an id), hands it to the workers through the delivery-source seam
// (server/delivery.h), then waits (bounded) for the workers to count their
// recipients so the answer can say how many there were.
//
// With the Redis backplane on (control/backplane.h) a publish goes to Redis
// instead (SPUBLISH, from this thread, bounded by redis_timeout_ms; in a
// Redis Cluster to the primary of the name's slot), and
// comes back to every node holding subscribers of the name, this one too.
//
// One Publisher per publishing thread (the admin listener's).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "control/redis_shards.h"
#include "proto/backplane.h"
#include "server/delivery.h"
#include "server/worker.h"

namespace rg::server {

class Publisher {
 public:
  explicit Publisher(Shared& shared);
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // In the publishing thread (the wake-up ring is single-issuer).
  void start() { source_.start(); }

  struct Outcome {
    int status;        // 200, 202 (a worker did not count in time), 400, 503
    std::string body;  // JSON
  };
  // `name` is validated here; the body's size by the caller (413).
  Outcome publish(Publication::Target target, std::string_view name, std::span<const std::uint8_t> body);
  // GET /users/{user}, /channels/{channel}: the fleet registry's counts per
  // node (with the backplane; 501 without).
  Outcome lookup(Publication::Target target, std::string_view name);

  // How long a publish waits for every worker to count its recipients.
  static constexpr std::uint64_t count_wait_ms = 2'000;
  // How long a publish waits for Redis (connect, or SPUBLISH's answer)
  // before it answers 503: the admin thread serves health checks too.
  static constexpr std::uint64_t redis_timeout_ms = 1'000;

 private:
  [[nodiscard]] bool backplane_up(std::string& why) const;
  Outcome publish_to_backplane(Publication::Target target, std::string_view name, std::span<const std::uint8_t> body);

  Shared& shared_;
  DeliverySource source_;
  std::uint64_t sequence_ = 0;
  std::string id_prefix_;  // per process start, so ids never repeat across restarts
  // With the backplane: connections to its Redis (each shard's primary
  // in a cluster), made on the first publish, again after a failure.
  std::unique_ptr<RoutedRedis> redis_;
};

}  // namespace rg::server
