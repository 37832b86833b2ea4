// Where a key lives in the backplane's Redis, and how to ask it there.
//
// One Redis (redis://) is one shard serving every slot.  A Redis Cluster
// (redis-cluster://) spreads its 16,384 slots over its primaries: the map
// is learnt with CLUSTER SLOTS from any seed (or any primary known
// before), a key goes to the primary of its slot (proto::backplane::slot),
// and an answer "MOVED" or "ASK" (proto::backplane::parse_redirect) is
// followed.  Only primaries are used: a sharded publish or subscribe on a
// replica would see only what reaches that replica.
//
// Why here and not a library: Debian's hiredis 0.14 speaks to one Redis,
// and Debian packages no cluster client (hiredis-cluster, hiredis-vip) for
// C or C++.  What ringgate needs of a cluster is small (a slot map, a
// connection per primary, redirections), so it is written on hiredis.
//
// ShardMap is plain data, used by both sides: the backplane thread's
// non-blocking connections (control/backplane.h) and RoutedRedis, the
// blocking commands of the publishing thread.
#pragma once

#include <hiredis/hiredis.h>

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proto/backplane.h"

namespace rg::server {

class ShardMap {
 public:
  explicit ShardMap(proto::backplane::Address address);

  [[nodiscard]] bool cluster() const noexcept { return address_.cluster; }
  [[nodiscard]] const proto::backplane::Address& address() const noexcept { return address_; }

  // Learns which primary serves each slot: for one Redis, its endpoint at
  // once; for a cluster, CLUSTER SLOTS asked of each primary known before
  // (the map is usually right about most of them) and then of each seed,
  // until one answers with every slot served.  Each node's connect and
  // answer are bounded by `timeout`, and no node is asked after
  // `deadline_ms` (base::monotonic_ms).  On failure the map is unchanged.
  [[nodiscard]] bool discover(timeval timeout, std::uint64_t deadline_ms, std::string& why);

  [[nodiscard]] const std::vector<proto::backplane::Endpoint>& shards() const noexcept { return shards_; }
  [[nodiscard]] std::size_t shard_of(std::string_view key) const noexcept;
  // After "MOVED SLOT HOST:PORT" answered by shard `from`: the slot is
  // served by HOST:PORT (the answering node when HOST is empty), added as a
  // shard when new.  Returns that shard.
  std::size_t moved(std::uint16_t slot, proto::backplane::Endpoint to, std::size_t from);
  // The shard at `to` (added when new), for "ASK".
  std::size_t find_or_add(proto::backplane::Endpoint to, std::size_t from);
  [[nodiscard]] std::string name(std::size_t shard) const;  // "host:port"

 private:
  proto::backplane::Address address_;
  std::vector<proto::backplane::Endpoint> shards_;
  // Cluster only: the shard of each slot, 16,384 entries sized here.
  std::vector<std::uint16_t> slot_shard_;
};

// Blocking commands routed by key, for the publishing thread: one
// connection per shard, made when first needed, each command (learning the
// map included) under one deadline of timeout_ms.  A redirection is
// followed at most redirects_max times; after MOVED the whole map is learnt
// again before the next command, and a map that could not be learnt is not
// asked for again within map_retry_ms (commands answer "not sent" at once).
class RoutedRedis {
 public:
  static constexpr int redirects_max = 5;
  static constexpr std::uint64_t map_retry_ms = 1'000;

  RoutedRedis(proto::backplane::Address address, std::uint64_t timeout_ms);
  ~RoutedRedis();
  RoutedRedis(const RoutedRedis&) = delete;
  RoutedRedis& operator=(const RoutedRedis&) = delete;

  struct ReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
  };
  struct Result {
    enum class Status : std::uint8_t {
      answered,  // `reply` holds Redis's answer (an error answer too, other than a redirection)
      not_sent,  // Redis cannot have run the command: safe to say "nothing happened"
      no_answer  // sent whole, no answer in time: it may have run
    };
    Status status = Status::not_sent;
    std::unique_ptr<redisReply, ReplyDeleter> reply;
    std::string why;  // when not answered
  };
  // `key` routes the command (it is usually argv[1]).
  [[nodiscard]] Result command(std::string_view key, int argc, const char** argv, const std::size_t* lens);
  void drop_all();

 private:
  redisContext* connection(std::size_t shard, std::uint64_t deadline_ms, std::string& why);
  void drop(std::size_t shard);

  ShardMap map_;
  std::uint64_t timeout_ms_;
  bool map_known_ = false;
  std::uint64_t map_retry_at_ms_ = 0;
  absl::flat_hash_map<std::string, redisContext*> connections_;  // by ShardMap::name
};

}  // namespace rg::server
