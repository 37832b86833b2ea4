// The Redis backplane's receiving side (control/backplane.h): one thread,
// one Redis connection in subscribed mode, the names this node's clients
// hold, and the messages Redis pushes for them posted to the workers.
#include "control/backplane.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "base/clock.h"

namespace rg::server {

namespace backplane = rg::proto::backplane;

Backplane::Backplane(Shared& shared, backplane::Address address, std::string instance, std::uint64_t node_ttl_ms)
    : shared_(shared),
      counters_(shared.backplane),
      address_(std::move(address)),
      instance_(std::move(instance)),
      node_key_(backplane::node_key(instance_)),
      node_ttl_ms_(node_ttl_ms),
      source_(shared) {
  rng_ ^= base::monotonic_ns();
}

Backplane::~Backplane() { stop(); }

void Backplane::start() {
  counters_.state.store(BackplaneState::down);
  thread_ = std::thread([this] { run(); });
}

void Backplane::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (redis_) redisFree(redis_);
  if (registry_) redisFree(registry_);
  redis_ = registry_ = nullptr;
}

void Backplane::run() {
  source_.start();
  while (!stop_.load()) {
    const std::uint64_t now = base::monotonic_ms();
    if (!redis_ && now >= next_attempt_ms_ && !connect()) {
      // Capped exponential backoff with jitter: a fleet that lost its Redis
      // does not reconnect in lockstep.
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      next_attempt_ms_ = now + backoff_ms_ / 2 + rng_ % (backoff_ms_ / 2 + 1);
      backoff_ms_ = std::min(backoff_ms_ * 2, backoff_max_ms);
    }
    pollfd fds[3] = {{shared_.interest->event_fd(), POLLIN, 0},
                     {redis_ ? redis_->fd : -1, POLLIN, 0},
                     {registry_ ? registry_->fd : -1, POLLIN, 0}};
    const int n = poll(fds, 3, poll_ms);
    if (n < 0 && errno != EINTR) {
      RG_LOG(error, "backplane: poll failed: %s", std::strerror(errno));
      break;
    }
    // Interest first: names held are tracked whether or not Redis is up.
    shared_.interest->take(events_);
    if (!events_.empty()) apply(events_);
    if (redis_ && (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) && !read_from(redis_, &Backplane::on_reply)) continue;
    if (registry_ && (fds[2].revents & (POLLIN | POLLERR | POLLHUP)) &&
        !read_from(registry_, &Backplane::on_registry_reply))
      continue;
    if (redis_) keep_alive(base::monotonic_ms());
    if (redis_) pump_commands();
    if (redis_ && answered_) write_registry(base::monotonic_ms());
    if (redis_ && !flush()) continue;
  }
  // Drain, step 3: the node's registry entries go before it exits.
  leave();
  counters_.state.store(BackplaneState::down);
}

bool Backplane::connect() {
  const timeval tv{static_cast<time_t>(connect_timeout_ms / 1000),
                   static_cast<suseconds_t>(connect_timeout_ms % 1000 * 1000)};
  redis_ = redisConnectWithTimeout(address_.host.c_str(), address_.port, tv);
  // Writes are bounded (answers_outstanding_max) and the socket stays
  // blocking for them, with a send timeout so that a Redis that stops
  // reading holds this thread at most that long; reads happen only after
  // poll() says there is something, so none blocks.
  if (redis_ && !redis_->err) registry_ = redisConnectWithTimeout(address_.host.c_str(), address_.port, tv);
  const auto fine = [&](redisContext* c) {
    return c && !c->err && redisSetTimeout(c, tv) == REDIS_OK && redisEnableKeepAlive(c) == REDIS_OK;
  };
  if (!fine(redis_) || !fine(registry_)) {
    counters_.connect_failures_total.add();
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(warn, "backplane: cannot reach Redis at %s:%u: %s; publishes answer 503 until it is back (next try "
                   "within %u ms; %u similar lines suppressed)",
             address_.host, address_.port,
             redis_ && redis_->err ? redis_->errstr
             : registry_ && registry_->err ? registry_->errstr
                                           : "cannot set up the connection",
             backoff_ms_, suppressed);
    if (redis_) redisFree(redis_);
    if (registry_) redisFree(registry_);
    redis_ = registry_ = nullptr;
    return false;
  }
  counters_.connects_total.add();
  answered_ = false;
  last_answer_ms_ = last_ping_ms_ = base::monotonic_ms();
  registry_outstanding_ = 0;
  last_renew_ms_ = last_registry_ms_ = 0;  // the node key and every count, at once
  for (const auto& [k, count] : names_) dirty_.insert(k);
  subscribe_all();
  // A PING first: its answer says this Redis serves us (a Redis at
  // maxclients accepts, then answers an error and closes).
  const char* ping[] = {"PING"};
  (void)redisAppendCommandArgv(redis_, 1, ping, nullptr);
  ++answers_outstanding_;
  pump_commands();
  // Up once Redis answers (on_reply): a stopped Redis's kernel still
  // accepts connections.
  return flush();
}

void Backplane::disconnect(std::string_view why) {
  counters_.state.store(BackplaneState::down);
  counters_.subscriptions.set(0);
  std::uint64_t suppressed = 0;
  if (lost_log_.allow(base::monotonic_ms(), suppressed))
    RG_LOG(warn, "backplane: lost Redis at %s:%u (%s): publishes answer 503 until it is back; subscribers on this "
                 "node miss what is published meanwhile (%u similar lines suppressed)",
           address_.host, address_.port, std::string(why), suppressed);
  redisFree(redis_);
  if (registry_) redisFree(registry_);
  redis_ = registry_ = nullptr;
  to_send_.clear();
  answers_outstanding_ = 0;
  // A connection that never answered (refused us after accepting) does not
  // reset the backoff: retry later, not at once.
  if (answered_) backoff_ms_ = backoff_min_ms;
  next_attempt_ms_ = base::monotonic_ms() + backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, backoff_max_ms);
}

// A silent connection is given up; an idle one is pinged.
void Backplane::keep_alive(std::uint64_t now_ms) {
  if (now_ms - last_answer_ms_ >= answer_timeout_ms) {
    disconnect("no answer within 3 s, not even to PING");
    return;
  }
  if (now_ms - last_answer_ms_ >= ping_interval_ms && now_ms - last_ping_ms_ >= ping_interval_ms) {
    const char* ping[] = {"PING"};
    (void)redisAppendCommandArgv(redis_, 1, ping, nullptr);
    ++answers_outstanding_;
    last_ping_ms_ = now_ms;
  }
}

// Sums each name's count over workers: Redis is asked for a name when the
// node's first subscriber (or connection of the user) arrives, and told to
// drop it when the last one leaves; the registry hears the count.
void Backplane::apply(const std::vector<Interest::Event>& events) {
  for (const Interest::Event& e : events) {
    std::string k = backplane::key(
        e.kind == Interest::Kind::channel ? backplane::Target::channel : backplane::Target::user, e.name);
    dirty_.insert(k);
    if (e.delta > 0) {
      auto [it, inserted] = names_.try_emplace(k, 0);
      it->second += static_cast<std::uint64_t>(e.delta);
      if (it->second == static_cast<std::uint64_t>(e.delta) && redis_) to_send_.emplace_back(true, std::move(k));
    } else if (const auto it = names_.find(k); it != names_.end()) {
      const auto less = static_cast<std::uint64_t>(-e.delta);
      it->second = it->second > less ? it->second - less : 0;
      if (it->second == 0) {
        names_.erase(it);
        if (redis_) to_send_.emplace_back(false, std::move(k));
      }
    }
  }
  counters_.names.set(names_.size());
  // Without a connection, names_ is all there is: it is subscribed whole on
  // the next connect.
}

// Sends (un)subscribes while few enough answers are outstanding, in the
// order they were queued, each command one verb for up to 512 names.
void Backplane::pump_commands() {
  std::vector<std::string> keys;
  while (!to_send_.empty() && answers_outstanding_ < answers_outstanding_max) {
    const bool subscribe = to_send_.front().first;
    keys.clear();
    while (!to_send_.empty() && to_send_.front().first == subscribe && keys.size() < keys_per_command) {
      std::string& k = to_send_.front().second;
      if (names_.contains(k) == subscribe) keys.push_back(std::move(k));  // still wanted
      to_send_.pop_front();
    }
    if (!keys.empty()) command(subscribe ? "SSUBSCRIBE" : "SUNSUBSCRIBE", keys);
  }
}

// Appends one command; flush() sends it.  Every key gets one answer.
void Backplane::command(const char* verb, const std::vector<std::string>& keys) {
  std::vector<const char*> argv{verb};
  std::vector<std::size_t> lens{std::strlen(verb)};
  for (const std::string& k : keys) {
    argv.push_back(k.data());
    lens.push_back(k.size());
  }
  (void)redisAppendCommandArgv(redis_, static_cast<int>(argv.size()), argv.data(), lens.data());
  answers_outstanding_ += keys.size();
}

void Backplane::subscribe_all() {
  to_send_.clear();
  for (const auto& [k, workers] : names_) to_send_.emplace_back(true, k);
}

bool Backplane::flush() {
  for (redisContext* c : {redis_, registry_}) {
    int done = 0;
    while (c && !done) {
      if (redisBufferWrite(c, &done) != REDIS_OK) {
        disconnect(c->errstr);
        return false;
      }
    }
  }
  return true;
}

// The registry: this node's count of each name that changed (HSET, or HDEL
// at 0), and its node key renewed (SET PX) a third of its TTL before it
// would lapse, pipelined: one round trip per interval for the whole node,
// never one per connection.
void Backplane::write_registry(std::uint64_t now_ms) {
  if (now_ms - last_renew_ms_ >= node_ttl_ms_ / 3) {
    renew_node();
    last_renew_ms_ = now_ms;
  }
  if (dirty_.empty() || now_ms - last_registry_ms_ < registry_flush_ms ||
      registry_outstanding_ >= registry_writes_max)
    return;
  last_registry_ms_ = now_ms;
  std::size_t written = 0;
  for (auto it = dirty_.begin(); it != dirty_.end() && written < registry_writes_max; ++written) {
    const std::string registry_key = *it + ":nodes";
    const auto found = names_.find(*it);
    if (found != names_.end()) {
      const std::string count = std::to_string(found->second);
      const char* argv[] = {"HSET", registry_key.data(), instance_.data(), count.data()};
      const std::size_t lens[] = {4, registry_key.size(), instance_.size(), count.size()};
      (void)redisAppendCommandArgv(registry_, 4, argv, lens);
    } else {
      const char* argv[] = {"HDEL", registry_key.data(), instance_.data()};
      const std::size_t lens[] = {4, registry_key.size(), instance_.size()};
      (void)redisAppendCommandArgv(registry_, 3, argv, lens);
    }
    ++registry_outstanding_;
    dirty_.erase(it++);
  }
}

void Backplane::renew_node() {
  const std::string value = "{\"started\":\"" + instance_ + "\"}";
  const std::string ttl = std::to_string(node_ttl_ms_);
  const char* argv[] = {"SET", node_key_.data(), value.data(), "PX", ttl.data()};
  const std::size_t lens[] = {3, node_key_.size(), value.size(), 2, ttl.size()};
  (void)redisAppendCommandArgv(registry_, 5, argv, lens);
  ++registry_outstanding_;
}

void Backplane::on_registry_reply(const redisReply& r) {
  if (registry_outstanding_ > 0) --registry_outstanding_;
  if (r.type == REDIS_REPLY_ERROR) disconnect("Redis refused a registry write: " + std::string(r.str, r.len));
}

// Drain, step 3: every field of this instance and its node key are deleted
// (within leave_timeout_ms), so no reader has to wait for the TTL.
void Backplane::leave() {
  if (!registry_ || !answered_) return;
  for (const auto& [k, count] : names_) dirty_.insert(k);
  std::uint64_t sent = 0;
  for (const std::string& k : dirty_) {
    const std::string registry_key = k + ":nodes";
    const char* argv[] = {"HDEL", registry_key.data(), instance_.data()};
    const std::size_t lens[] = {4, registry_key.size(), instance_.size()};
    (void)redisAppendCommandArgv(registry_, 3, argv, lens);
    ++sent;
  }
  const char* del[] = {"DEL", node_key_.data()};
  const std::size_t del_lens[] = {3, node_key_.size()};
  (void)redisAppendCommandArgv(registry_, 2, del, del_lens);
  ++sent;
  const timeval tv{static_cast<time_t>(leave_timeout_ms / 1000),
                   static_cast<suseconds_t>(leave_timeout_ms % 1000 * 1000)};
  (void)redisSetTimeout(registry_, tv);
  // Blocking now: answers to what was still outstanding come first.
  const std::uint64_t expected = sent + registry_outstanding_;
  std::uint64_t answered = 0;
  for (; answered < expected; ++answered) {
    void* raw = nullptr;
    if (redisGetReply(registry_, &raw) != REDIS_OK || !raw) break;
    freeReplyObject(raw);
  }
  RG_LOG(info, "backplane: left the registry: %u names' entries and the node key deleted%s", sent - 1,
         answered == expected ? "" : " (not all confirmed: Redis did not answer in time; the TTL ends the rest)");
}

// Reads what Redis sent on `c` (poll said there is something) and hands
// each reply to `handle`; false once the connections are gone.
bool Backplane::read_from(redisContext* c, void (Backplane::*handle)(const redisReply&)) {
  if (redisBufferRead(c) != REDIS_OK) {
    disconnect(c->err == REDIS_ERR_EOF ? "Redis closed the connection" : c->errstr);
    return false;
  }
  for (;;) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(c, &reply) != REDIS_OK) {
      disconnect(c->errstr);
      return false;
    }
    if (!reply) return true;
    (this->*handle)(*static_cast<redisReply*>(reply));
    freeReplyObject(reply);
    if (!redis_) return false;  // the reply was an error: disconnected
  }
}

// RESP2 pushes in subscribed mode: [kind, channel, count or payload].
void Backplane::on_reply(const redisReply& r) {
  last_answer_ms_ = base::monotonic_ms();
  if (r.type == REDIS_REPLY_ERROR) {
    // NOAUTH, NOPERM, an unknown SSUBSCRIBE (Redis before 7), a Redis at
    // maxclients: what was asked for is not in place, and carrying on
    // would say "up" while nothing arrives.  Drop it and retry with backoff.
    disconnect("Redis answered an error: " + std::string(r.str, r.len) + " (the backplane needs Redis 7 or later)");
    return;
  }
  if (!answered_) {
    answered_ = true;
    backoff_ms_ = backoff_min_ms;
    counters_.state.store(BackplaneState::up);
    RG_LOG(info, "backplane: connected to Redis at %s:%u, subscribing to the %u names this node's clients hold",
           address_.host, address_.port, names_.size());
  }
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 2 || r.element[0]->type != REDIS_REPLY_STRING) return;
  const std::string_view kind(r.element[0]->str, r.element[0]->len);
  if (kind == "pong") {  // RESP2 answers PING this way in subscribed mode
    if (answers_outstanding_ > 0) --answers_outstanding_;
    return;
  }
  if (r.elements != 3) return;
  if (kind == "smessage" && r.element[1]->type == REDIS_REPLY_STRING && r.element[2]->type == REDIS_REPLY_STRING) {
    deliver(*r.element[1], *r.element[2]);
  } else if ((kind == "ssubscribe" || kind == "sunsubscribe") && r.element[2]->type == REDIS_REPLY_INTEGER) {
    if (answers_outstanding_ > 0) --answers_outstanding_;
    counters_.subscriptions.set(static_cast<std::uint64_t>(r.element[2]->integer));
  }
}

void Backplane::deliver(const redisReply& channel, const redisReply& payload) {
  // Draining: workers are closing their connections and some have exited;
  // a post would only fill an exited worker's mailbox.
  if (shared_.stopping.load()) return;
  const backplane::Key k = backplane::parse_key({channel.str, channel.len});
  const backplane::Message m =
      backplane::decode({reinterpret_cast<const std::uint8_t*>(payload.str), payload.len});
  if (!k.ok || !m.ok) {
    counters_.malformed_total.add();
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(warn, "backplane: dropped a message on %s: %s (does another writer use ringgate's keys? %u similar "
                   "lines suppressed)",
             std::string(channel.str, channel.len), k.ok ? m.error : "not a ringgate key", suppressed);
    return;
  }
  const Publication::Target target =
      k.target == backplane::Target::user ? Publication::Target::user : Publication::Target::channel;
  Publication* p = source_.frame(target, k.name, std::string(m.id), m.body);
  if (!p) {
    counters_.dropped_total.add();
    return;
  }
  if (source_.post(p) == DeliverySource::Posted::mailbox_full) {
    counters_.dropped_total.add();
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(warn, "backplane: a worker's mailbox is full (mailbox_size): dropped message %s on %s (%u similar lines "
                   "suppressed)",
             std::string(m.id), std::string(k.name), suppressed);
  } else {
    counters_.messages_total.add();
  }
  p->unref();
}

}  // namespace rg::server
