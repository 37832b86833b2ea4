// The Redis backplane's wire: how ringgate names its channels and users in
// Redis, and how a message travels between nodes.  Pure: strings in,
// verdicts out.  The thread that talks to Redis is control/backplane.h.
//
// Keys.  A ringgate channel NAME is the Redis (sharded) pub/sub channel
// "rg:{c:NAME}", a user NAME is "rg:{u:NAME}".  The braces are a Redis
// Cluster hash tag: a key's slot depends on the name alone, so names spread
// over the shards, and a name's messages all go through one shard, in
// order.  Valid ringgate names ([A-Za-z0-9._:-]) hold no braces, so the tag
// is always the whole name.
//
// Messages.  "rg1 " ID "\n" BODY: a version, the message id the publishing
// node gave it (a valid name), then the body's bytes as published.  The
// receiving nodes frame it for their own subscribers; what crosses Redis is
// never a WebSocket frame.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rg::proto::backplane {

enum class Target : std::uint8_t { channel, user };

// The Redis channel a ringgate channel or user travels on.
[[nodiscard]] std::string key(Target target, std::string_view name);

struct Key {
  bool ok = false;
  Target target = Target::channel;
  std::string_view name;  // within the parsed string
};
// The ringgate name a Redis channel stands for; not ok when the key is not
// one of ours or the name inside is not a valid name.
[[nodiscard]] Key parse_key(std::string_view key) noexcept;

// The registry.  A name's counts per node: the hash "rg:{c:NAME}:nodes" or
// "rg:{u:NAME}:nodes" (the same slot as the name's channel), one field per
// node instance ("NODE/START", a node id and its start time in ms, so that
// a restarted node never revives its previous life's fields), its value
// the subscribers or connections on that node.  A node instance is alive
// while "rg:{n:NODE/START}" exists: the node renews it with a TTL, and
// readers ignore (and delete) the fields of instances whose key is gone.
[[nodiscard]] std::string registry_key(Target target, std::string_view name);
[[nodiscard]] std::string node_key(std::string_view instance);
[[nodiscard]] std::string instance(std::string_view node_id, std::uint64_t start_ms);
// The node id of an instance ("NODE/START" -> "NODE"); empty when it is not one.
[[nodiscard]] std::string_view instance_node(std::string_view instance) noexcept;

inline constexpr std::string_view message_prefix = "rg1 ";
[[nodiscard]] std::string encode(std::string_view id, std::span<const std::uint8_t> body);

struct Message {
  bool ok = false;
  std::string_view id;
  std::span<const std::uint8_t> body;
  std::string_view error;  // why not ok
};
// Views into `wire`.
[[nodiscard]] Message decode(std::span<const std::uint8_t> wire) noexcept;

// backplane = "redis://HOST:PORT" (HOST a name, an IPv4 address or [IPv6];
// PORT 1..65535, 6379 when left out), or
// "redis-cluster://HOST:PORT[,HOST:PORT...]": a Redis Cluster, found
// through any of up to seeds_max of its nodes.
struct Endpoint {
  std::string host;
  std::uint16_t port = 6379;
};
struct Address {
  bool cluster = false;
  std::vector<Endpoint> endpoints;  // one for redis://; the seeds for redis-cluster://
};
inline constexpr std::size_t seeds_max = 16;
[[nodiscard]] bool parse_url(std::string_view url, Address& out, std::string& error);
[[nodiscard]] std::string describe(const Address& address);  // "redis://h:p" or "redis-cluster://h:p,h:p"

// Redis Cluster's key slots: CRC16 (XMODEM) of the key's hash tag (the
// bytes between the first '{' and the next '}', when not empty) or else of
// the whole key, modulo 16384.  Every ringgate key is tagged by its name,
// so a name's channel and registry hash share a slot.
inline constexpr std::uint16_t slots = 16384;
[[nodiscard]] std::uint16_t slot(std::string_view key) noexcept;

// A cluster's answer that a key's slot is served elsewhere: "MOVED SLOT
// HOST:PORT" (for good: the map is stale) or "ASK SLOT HOST:PORT" (this
// once, during a migration: send ASKING first).  An empty HOST means the
// node that answered.
struct Redirect {
  enum class Kind : std::uint8_t { none, moved, ask };
  Kind kind = Kind::none;
  std::uint16_t slot = 0;
  Endpoint to;
};
[[nodiscard]] Redirect parse_redirect(std::string_view error);

}  // namespace rg::proto::backplane
