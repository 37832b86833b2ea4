// One worker's pub/sub index: which of its connections listen to which
// channel, and which belong to which user.  Single-threaded (the worker's).
//
// A subscriber is a connection on the pub/sub endpoint.  Subscriptions are
// 20-byte nodes on two intrusive lists at once: the channel's (doubly linked,
// so unsubscribing is O(1)) and the subscriber's (singly linked; at most
// max_subscriptions long).  A channel exists while it has subscribers; its
// name is interned once, however many subscribe.  Users are the same: an
// interned name with the list of that user's connections on this worker.
//
// A fan-out walks a channel's list across several loop turns; the index
// keeps that walk's cursor valid when the node under it is unsubscribed, and
// keeps the channel alive while the walk is on it.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rg::server {

class SubscriptionIndex {
 public:
  static constexpr std::uint32_t nil = UINT32_MAX;

  // Told every time a channel gains or loses a subscriber and a user a
  // connection: what a backplane sums over workers to know which names to
  // ask Redis for on this node's behalf (while the sum is above 0), and
  // what the fleet's registry counts.
  class Watch {
   public:
    enum class Kind : std::uint8_t { channel, user };
    virtual void counted(Kind kind, std::string_view name, int delta) = 0;

   protected:
    ~Watch() = default;
  };
  void set_watch(Watch* watch) noexcept { watch_ = watch; }

  // `subscribers_max`: connections that may be subscribers at once (the
  // worker's table slots).  Vectors are reserved here and grow within it.
  void init(std::uint32_t subscribers_max, std::uint32_t subscriptions_per_subscriber_max);

  // A new subscriber for connection `slot`; nil when subscribers_max are in use.
  std::uint32_t attach(std::uint32_t slot);
  // Removes every subscription and the user link, then frees the id.
  void detach(std::uint32_t sub);
  [[nodiscard]] std::uint32_t slot_of(std::uint32_t sub) const noexcept { return subs_[sub].slot; }

  enum class Added : std::uint8_t { added, already, too_many };
  Added subscribe(std::uint32_t sub, std::string_view channel);
  // False when the subscriber was not subscribed.
  bool unsubscribe(std::uint32_t sub, std::string_view channel);
  [[nodiscard]] std::uint32_t subscription_count(std::uint32_t sub) const noexcept { return subs_[sub].count; }

  // Links the subscriber to `user` (once, at connect).
  void set_user(std::uint32_t sub, std::string_view user);

  // ------------------------------------------------------------ lookups
  [[nodiscard]] std::uint32_t find_channel(std::string_view name) const;
  [[nodiscard]] std::uint32_t channel_subscribers(std::uint32_t channel) const noexcept {
    return channels_[channel].count;
  }
  [[nodiscard]] std::uint32_t find_user(std::string_view name) const;
  [[nodiscard]] std::uint32_t user_connections(std::uint32_t user) const noexcept { return users_[user].count; }
  // Calls f(subscriber) for each of a user's connections.
  template <typename F>
  void for_each_of_user(std::uint32_t user, F&& f) const {
    for (std::uint32_t s = users_[user].head; s != nil; s = subs_[s].user_next) f(s);
  }

  // ------------------------------------------------------------ channel walks
  // One walk at a time (fan-out is FIFO).  begin_walk pins the channel;
  // next() yields subscribers until nil; end_walk unpins (and frees the
  // channel if it emptied meanwhile).
  void begin_walk(std::uint32_t channel);
  [[nodiscard]] std::uint32_t next();
  void end_walk();
  [[nodiscard]] bool walking() const noexcept { return walk_channel_ != nil; }

  // ------------------------------------------------------------ totals
  [[nodiscard]] std::uint64_t subscriptions() const noexcept { return subscriptions_; }
  [[nodiscard]] std::uint64_t channels() const noexcept { return channel_ids_.size(); }
  [[nodiscard]] std::uint64_t subscribers() const noexcept { return subscribers_; }
  // Bytes the index holds now (nodes, records, interned names), for /status.
  [[nodiscard]] std::uint64_t memory_bytes() const noexcept;

 private:
  struct Node {
    std::uint32_t channel;
    std::uint32_t sub;
    std::uint32_t prev;      // in the channel's list
    std::uint32_t next;      // in the channel's list
    std::uint32_t sub_next;  // in the subscriber's list
  };
  struct Subscriber {
    std::uint32_t slot = nil;
    std::uint32_t head = nil;  // first node
    std::uint32_t count = 0;
    std::uint32_t user = nil;
    std::uint32_t user_prev = nil;
    std::uint32_t user_next = nil;
  };
  struct Channel {
    std::string name;
    std::uint32_t head = nil;
    std::uint32_t tail = nil;
    std::uint32_t count = 0;
  };
  struct User {
    std::string name;
    std::uint32_t head = nil;
    std::uint32_t count = 0;
  };

  std::uint32_t channel_id(std::string_view name);  // finds or creates
  void unlink(std::uint32_t node);                 // from its channel's list; frees the node
  void maybe_free_channel(std::uint32_t channel);
  void unlink_user(std::uint32_t sub);

  std::vector<Subscriber> subs_;
  std::vector<std::uint32_t> free_subs_;
  std::vector<Node> nodes_;
  std::vector<std::uint32_t> free_nodes_;
  std::vector<Channel> channels_;
  std::vector<std::uint32_t> free_channels_;
  absl::flat_hash_map<std::string, std::uint32_t> channel_ids_;
  std::vector<User> users_;
  std::vector<std::uint32_t> free_users_;
  absl::flat_hash_map<std::string, std::uint32_t> user_ids_;
  std::uint32_t subscribers_max_ = 0;
  std::uint32_t per_subscriber_max_ = 0;
  std::uint64_t subscriptions_ = 0;
  std::uint64_t subscribers_ = 0;
  std::uint64_t name_bytes_ = 0;
  std::uint32_t walk_channel_ = nil;
  std::uint32_t walk_next_ = nil;  // the node next() returns next
  Watch* watch_ = nullptr;
};

}  // namespace rg::server
