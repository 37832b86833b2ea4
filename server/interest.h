// What this node's clients listen to, for a delivery source that must ask
// for it by name: the Redis backplane subscribes to a channel while some
// connection here holds it, and to a user while one of the user's devices
// is connected here, so that a node never receives the whole fleet's
// traffic.
//
// Workers report each name as it comes into their index and leaves it
// (SubscriptionIndex::Watch): once per name per worker, not per
// subscriber.  The consumer (the backplane thread) takes the events in
// order and keeps the sum over workers.  A worker only takes a mutex here
// when a name is new to it or gone from it, and never waits on the
// consumer: events queue until it takes them.
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
    bool opened;  // else closed
    std::string name;
  };

  Interest();
  ~Interest();
  Interest(const Interest&) = delete;
  Interest& operator=(const Interest&) = delete;

  // Any worker.
  void note(Kind kind, bool opened, std::string_view name);
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
