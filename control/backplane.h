// The Redis backplane (backplane = redis://HOST:PORT): how a publication on
// one node reaches the subscribers on every node.
//
// Publishing: the publish API SPUBLISHes the message (proto/backplane.h) to
// the name's Redis channel instead of posting it to this node's workers
// (control/publisher.cpp).  Receiving: this thread holds one Redis
// connection in RESP2 subscribed mode, SSUBSCRIBEd to exactly the names
// this node's clients hold (server/interest.h: a channel while some
// connection here is subscribed to it, a user while one of the user's
// devices is connected here), and posts each message that arrives into the
// workers' mailboxes through the delivery-source seam (server/delivery.h),
// like a local publish.  The publishing node gets its own message back the
// same way when it has subscribers, so every subscriber on every node sees
// one channel's messages once each, in the order Redis took them.
//
// Sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7) rather than the classic
// kind: on one Redis they behave the same, and in a Redis Cluster a message
// is broadcast within its shard only instead of over the whole cluster bus.
//
// A Redis Cluster (backplane = redis-cluster://SEEDS) is the path past one
// Redis: each name's channel lives on the primary of its slot
// (control/redis_shards.h), so this thread holds one pair of connections
// per primary, subscribes each name on its own primary (an SSUBSCRIBE's
// names must share a slot there), and writes each registry field to its
// key's primary.  The backplane is up while every primary is: a node that
// could reach only some would deliver some channels and silently not
// others.  When slots move (resharding, a failover), Redis unsubscribes
// the names of the slots it lost or answers MOVED; the backplane then
// learns the map again and subscribes everything anew, as after a
// reconnect.
//
// Redis I/O never runs on a worker.  While Redis is unreachable the state
// is `down`: publishes answer 503 with Retry-After (never a silent
// local-only delivery), this thread retries with capped exponential backoff
// and jitter, and on reconnecting it subscribes again to every name held
// then.  Messages published while a node was cut off do not reach it:
// delivery is at most once until stream positions and recovery exist.
#pragma once

#include <hiredis/hiredis.h>
#include <poll.h>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

#include <atomic>
#include <deque>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "control/redis_shards.h"
#include "proto/backplane.h"
#include "server/delivery.h"
#include "server/interest.h"
#include "server/worker.h"

namespace rg::server {

class Backplane {
 public:
  // Limits, each with its reason.
  static constexpr std::uint64_t connect_timeout_ms = 1'000;  // one attempt; then backoff
  static constexpr std::uint64_t backoff_min_ms = 100;
  static constexpr std::uint64_t backoff_max_ms = 5'000;      // a recovered Redis is found within this
  // The backoff starts again from backoff_min_ms only after the connection
  // stayed up this long: a Redis that answers PING and then refuses what
  // follows (NOPERM, CROSSSLOT, MOVED with a stale map) is not retried ten
  // times a second.
  static constexpr std::uint64_t stable_ms = 5'000;
  // One connection attempt (the cluster's map, then every primary's two
  // connections) gives up after this, and looks at stop() in between.
  static constexpr std::uint64_t connect_attempt_ms = 5'000;
  static constexpr std::size_t keys_per_command = 512;        // SSUBSCRIBE/SUNSUBSCRIBE batch
  // Names whose (un)subscribe answers may be outstanding at once.  Redis
  // closes a subscriber whose unread output passes client-output-buffer-
  // limit pubsub (32 MB hard, 8 MB for 60 s): 1M answers sent in one go on
  // a reconnect are ~50 MB, and the connection would be closed and retried
  // forever.  16,384 answers are under 1 MB.
  static constexpr std::uint64_t answers_outstanding_max = 16'384;
  static constexpr int poll_ms = 100;                          // notice stop and backoff ends this often
  // A connection that went silent (a partition, a failover without a FIN)
  // is found by PING: one every ping_interval_ms while nothing else came,
  // and the connection is given up when nothing at all has come for
  // answer_timeout_ms.  TCP keepalive backs it up.
  static constexpr std::uint64_t ping_interval_ms = 1'000;
  static constexpr std::uint64_t answer_timeout_ms = 3'000;
  // The registry: counts that changed are written at most this often (a
  // name's last count in the interval, one HSET or HDEL), pipelined on a
  // second connection, at most registry_writes_max per interval.
  static constexpr std::uint64_t registry_flush_ms = 1'000;
  static constexpr std::size_t registry_writes_max = 16'384;
  // A message for a worker whose mailbox is full (mailbox_size: the
  // workers deliver slower than Redis brings messages) is retried until
  // it fits, for at most this long per turn of the thread's loop (all
  // messages of the turn together), then dropped and counted.  Meanwhile
  // nothing more is read from Redis: a burst becomes latency, with the rest
  // buffered in Redis (up to its client-output-buffer-limit pubsub, 8 MB
  // for 60 s or 32 MB, past which Redis drops the connection and the node
  // reconnects), in order, instead of a loss.  Time spent waiting does not
  // count as Redis's silence (answer_timeout_ms).
  static constexpr std::uint64_t mailbox_wait_ms = 2'000;
  // On leaving (stop), the node's fields and key are deleted within this.
  static constexpr std::uint64_t leave_timeout_ms = 1'000;

  // `instance`: this node's registry instance (proto::backplane::instance);
  // `node_ttl_ms`: how long its fields outlive it if it dies without a word.
  Backplane(Shared& shared, proto::backplane::Address address, std::string instance, std::uint64_t node_ttl_ms);
  ~Backplane();
  Backplane(const Backplane&) = delete;
  Backplane& operator=(const Backplane&) = delete;

  void start();
  void stop();

  // At most this many primaries in a cluster: each holds two connections
  // and two pollfds of this thread.
  static constexpr std::size_t shards_max = 256;

 private:
  // One primary's connections and what is in flight on them.
  struct Link {
    redisContext* redis = nullptr;     // subscribed mode
    redisContext* registry = nullptr;  // normal mode: HSET/HDEL/SET
    // Names to SSUBSCRIBE (true) or SUNSUBSCRIBE (false), in the order
    // the workers reported them, sent as answers come back
    // (answers_outstanding_max).  When its turn comes, a subscribe of a
    // name no longer held, or an unsubscribe of one held again, is skipped.
    std::deque<std::pair<bool, std::string>> to_send;
    // Names unsubscribed and not yet answered: any other sunsubscribe is
    // Redis telling us the name's slot moved away.
    absl::flat_hash_map<std::string, std::uint32_t> unsubscribing;
    std::uint64_t answers_outstanding = 0;
    std::uint64_t registry_outstanding = 0;
    // The names whose registry writes await an answer, in order: one an
    // "ASK" answer refused (its slot is being migrated) is written again.
    std::deque<std::string> registry_names;
    std::uint64_t registry_waiting_since_ms = 0;  // the oldest unanswered write's time
    std::uint64_t subscriptions = 0;
    bool answered = false;             // this connection has answered once
    std::uint64_t last_answer_ms = 0;  // anything from Redis
    std::uint64_t last_ping_ms = 0;
  };

  void run();
  bool connect();
  [[nodiscard]] bool open_links(std::uint64_t deadline_ms, std::string& why);
  void disconnect(std::string_view why);
  void apply(const std::vector<Interest::Event>& events);
  void command(Link& link, const char* verb, const std::vector<std::string>& keys);
  void subscribe_all();
  void pump_commands(Link& link);
  void keep_alive(Link& link, std::uint64_t now_ms);
  [[nodiscard]] bool flush();
  [[nodiscard]] bool read_from(Link& link, redisContext* c, void (Backplane::*handle)(Link&, const redisReply&));
  void on_reply(Link& link, const redisReply& r);
  void on_answer(Link& link);
  void deliver(const redisReply& channel, const redisReply& payload);
  // The registry connection (normal mode: the other one is subscribed).
  void write_registry(std::uint64_t now_ms);
  void renew_node();
  void on_registry_reply(Link& link, const redisReply& r);
  void slots_moved(Link& link, std::string_view error);
  void leave();
  [[nodiscard]] Link& link_of(std::string_view key) { return links_[shards_.shard_of(key)]; }
  [[nodiscard]] bool connected() const noexcept { return !links_.empty(); }
  [[nodiscard]] std::string where(const Link& link) const;

  Shared& shared_;
  BackplaneCounters& counters_;
  ShardMap shards_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  // One per shard while connected (every primary answered, or trying to);
  // empty while down.
  std::vector<Link> links_;
  std::vector<pollfd> pollfds_;
  std::string instance_;
  std::string node_key_;
  std::uint64_t node_ttl_ms_;
  // Redis key -> subscribers (channel) or connections (user) on this node,
  // summed over workers.  Subscribed in Redis while above zero (and the
  // connection is up).
  absl::flat_hash_map<std::string, std::uint64_t> names_;
  // Names whose count changed since the registry last heard: written at
  // the next registry_flush_ms.
  absl::flat_hash_set<std::string> dirty_;
  std::uint64_t last_registry_ms_ = 0;
  std::uint64_t last_renew_ms_ = 0;
  bool answered_ = false;  // every link has answered once (up)
  std::uint64_t up_since_ms_ = 0;
  std::uint64_t waited_ms_ = 0;  // mailbox waits in this turn of the loop (mailbox_wait_ms)
  std::vector<Interest::Event> events_;
  DeliverySource source_;
  std::uint64_t backoff_ms_ = backoff_min_ms;
  std::uint64_t next_attempt_ms_ = 0;
  std::uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  base::log::RateLimited log_{4, 10'000};
  base::log::RateLimited lost_log_{2, 10'000};
};

}  // namespace rg::server
