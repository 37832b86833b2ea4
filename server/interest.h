// What this node's clients listen to, for a delivery source that must ask
// for it by name: the Redis backplane subscribes to a channel while some
// connection here holds it, and to a user while one of the user's devices
// is connected here, so that a node never receives the whole fleet's
// traffic; and it writes the counts to the fleet's registry.
//
// Workers report every subscriber a channel gains or loses and every
// connection of a user (SubscriptionIndex::Watch).  The consumer (the
// backplane thread) takes the events in order and keeps the sums over
// workers.  A worker takes a mutex here once per subscribe, unsubscribe
// and user connection, and never waits on the consumer: events queue until
// it takes them (every 100 ms at the latest).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "server/subscriptions.h"

namespace rg::server {

class Interest {
 public:
  using Kind = SubscriptionIndex::Watch::Kind;
  struct Event {
    Kind kind;
    int delta;  // +1: a subscriber or connection more; -1: one less
    std::string name;
  };

  Interest();
  ~Interest();
  Interest(const Interest&) = delete;
  Interest& operator=(const Interest&) = delete;

  // Any worker.
  void note(Kind kind, int delta, std::string_view name);
  // The consumer: the events since the last take, in the order noted.
  void take(std::vector<Event>& out);
  // Readable while events wait: the consumer polls it with its other fds.
  [[nodiscard]] int event_fd() const noexcept { return event_fd_; }

 private:
  std::mutex lock_;
  std::vector<Event> pending_;
  int event_fd_ = -1;
};

}  // namespace rg::server
