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

Backplane::Backplane(Shared& shared, backplane::Address address)
    : shared_(shared), counters_(shared.backplane), address_(std::move(address)), source_(shared) {
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
  if (redis_) {
    redisFree(redis_);
    redis_ = nullptr;
  }
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
    pollfd fds[2] = {{shared_.interest->event_fd(), POLLIN, 0}, {redis_ ? redis_->fd : -1, POLLIN, 0}};
    const int n = poll(fds, 2, poll_ms);
    if (n < 0 && errno != EINTR) {
      RG_LOG(error, "backplane: poll failed: %s", std::strerror(errno));
      break;
    }
    // Interest first: names held are tracked whether or not Redis is up.
    shared_.interest->take(events_);
    if (!events_.empty()) apply(events_);
    if (redis_ && (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) && !read_replies()) continue;
    if (redis_ && !flush()) continue;
  }
  counters_.state.store(BackplaneState::down);
}

bool Backplane::connect() {
  const timeval tv{static_cast<time_t>(connect_timeout_ms / 1000),
                   static_cast<suseconds_t>(connect_timeout_ms % 1000 * 1000)};
  redis_ = redisConnectWithTimeout(address_.host.c_str(), address_.port, tv);
  if (!redis_ || redis_->err) {
    counters_.connect_failures_total.add();
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(warn, "backplane: cannot reach Redis at %s:%u: %s; publishes answer 503 until it is back (retrying "
                   "within %u ms; %u similar lines suppressed)",
             address_.host, address_.port, redis_ ? redis_->errstr : "out of memory", backoff_ms_, suppressed);
    if (redis_) redisFree(redis_);
    redis_ = nullptr;
    return false;
  }
  // Writes are small and the socket stays blocking for them; reads happen
  // only after poll() says there is something, so none blocks.
  counters_.connects_total.add();
  backoff_ms_ = backoff_min_ms;
  subscribe_all();
  if (!flush()) return false;
  counters_.state.store(BackplaneState::up);
  RG_LOG(info, "backplane: connected to Redis at %s:%u, subscribing to the %u names this node's clients hold",
         address_.host, address_.port, names_.size());
  return true;
}

void Backplane::disconnect(std::string_view why) {
  counters_.state.store(BackplaneState::down);
  counters_.subscriptions.set(0);
  RG_LOG(warn, "backplane: lost Redis at %s:%u (%s): publishes answer 503 until it is back; subscribers on this "
               "node miss what is published meanwhile",
         address_.host, address_.port, std::string(why));
  redisFree(redis_);
  redis_ = nullptr;
  next_attempt_ms_ = base::monotonic_ms() + backoff_ms_;
}

// Sums each name over workers: Redis is asked for a name when the first
// worker holds it, and told to drop it when the last one lets go.  A name
// that comes and goes within one batch is settled by where it ends up.
void Backplane::apply(const std::vector<Interest::Event>& events) {
  std::vector<std::string> opened;
  std::vector<std::string> closed;
  for (const Interest::Event& e : events) {
    std::string k = backplane::key(
        e.kind == Interest::Kind::channel ? backplane::Target::channel : backplane::Target::user, e.name);
    if (e.opened) {
      auto [it, inserted] = names_.try_emplace(k, 0);
      if (++it->second == 1) opened.push_back(std::move(k));
    } else if (const auto it = names_.find(k); it != names_.end() && --it->second == 0) {
      names_.erase(it);
      closed.push_back(std::move(k));
    }
  }
  counters_.names.set(names_.size());
  if (!redis_) return;  // every name held is subscribed on the next connect
  std::vector<const std::string*> subscribe;
  for (const std::string& k : opened)
    if (names_.contains(k)) subscribe.push_back(&k);
  std::vector<const std::string*> unsubscribe;
  for (const std::string& k : closed)
    if (!names_.contains(k)) unsubscribe.push_back(&k);
  if (!subscribe.empty()) command("SSUBSCRIBE", subscribe);
  if (!unsubscribe.empty()) command("SUNSUBSCRIBE", unsubscribe);
}

void Backplane::command(const char* verb, const std::vector<const std::string*>& keys) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (std::size_t i = 0; i < keys.size(); i += keys_per_command) {
    argv.assign(1, verb);
    lens.assign(1, std::strlen(verb));
    for (std::size_t j = i; j < keys.size() && j < i + keys_per_command; ++j) {
      argv.push_back(keys[j]->data());
      lens.push_back(keys[j]->size());
    }
    (void)redisAppendCommandArgv(redis_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
}

void Backplane::subscribe_all() {
  std::vector<const std::string*> keys;
  keys.reserve(names_.size());
  for (const auto& [k, workers] : names_) keys.push_back(&k);
  if (!keys.empty()) command("SSUBSCRIBE", keys);
}

bool Backplane::flush() {
  int done = 0;
  while (!done) {
    if (redisBufferWrite(redis_, &done) != REDIS_OK) {
      disconnect(redis_->errstr);
      return false;
    }
  }
  return true;
}

bool Backplane::read_replies() {
  if (redisBufferRead(redis_) != REDIS_OK) {
    disconnect(redis_->err == REDIS_ERR_EOF ? "Redis closed the connection" : redis_->errstr);
    return false;
  }
  for (;;) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(redis_, &reply) != REDIS_OK) {
      disconnect(redis_->errstr);
      return false;
    }
    if (!reply) return true;
    on_reply(*static_cast<redisReply*>(reply));
    freeReplyObject(reply);
  }
}

// RESP2 pushes in subscribed mode: [kind, channel, count or payload].
void Backplane::on_reply(const redisReply& r) {
  if (r.type == REDIS_REPLY_ERROR) {
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(error, "backplane: Redis answered an error: %s (SSUBSCRIBE needs Redis 7; %u similar lines suppressed)",
             std::string(r.str, r.len), suppressed);
    return;
  }
  if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || r.element[0]->type != REDIS_REPLY_STRING) return;
  const std::string_view kind(r.element[0]->str, r.element[0]->len);
  if (kind == "smessage" && r.element[1]->type == REDIS_REPLY_STRING && r.element[2]->type == REDIS_REPLY_STRING) {
    deliver(*r.element[1], *r.element[2]);
  } else if ((kind == "ssubscribe" || kind == "sunsubscribe") && r.element[2]->type == REDIS_REPLY_INTEGER) {
    counters_.subscriptions.set(static_cast<std::uint64_t>(r.element[2]->integer));
  }
}

void Backplane::deliver(const redisReply& channel, const redisReply& payload) {
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
