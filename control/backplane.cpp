// The Redis backplane's receiving side (control/backplane.h): one thread,
// a Redis connection in subscribed mode per primary (one for a single
// Redis), the names this node's clients hold, and the messages Redis
// pushes for them posted to the workers.
#include "control/backplane.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>

#include "base/clock.h"

namespace rg::server {

namespace backplane = rg::proto::backplane;

Backplane::Backplane(Shared& shared, backplane::Address address, std::string instance, std::uint64_t node_ttl_ms)
    : shared_(shared),
      counters_(shared.backplane),
      shards_(std::move(address)),
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
  for (Link& l : links_) {
    if (l.redis) redisFree(l.redis);
    if (l.registry) redisFree(l.registry);
  }
  links_.clear();
}

std::string Backplane::where(const Link& link) const {
  return shards_.name(static_cast<std::size_t>(&link - links_.data()));
}

void Backplane::run() {
  source_.start();
  while (!stop_.load()) {
    const std::uint64_t now = base::monotonic_ms();
    if (!connected() && now >= next_attempt_ms_ && !connect()) {
      // Capped exponential backoff with jitter: a fleet that lost its Redis
      // does not reconnect in lockstep.
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      next_attempt_ms_ = now + backoff_ms_ / 2 + rng_ % (backoff_ms_ / 2 + 1);
      backoff_ms_ = std::min(backoff_ms_ * 2, backoff_max_ms);
    }
    pollfds_.assign(1, {shared_.interest->event_fd(), POLLIN, 0});
    for (const Link& l : links_) {
      pollfds_.push_back({l.redis->fd, POLLIN, 0});
      pollfds_.push_back({l.registry->fd, POLLIN, 0});
    }
    const int n = poll(pollfds_.data(), pollfds_.size(), poll_ms);
    if (n < 0 && errno != EINTR) {
      RG_LOG(error, "backplane: poll failed: %s", std::strerror(errno));
      break;
    }
    // Interest first: names held are tracked whether or not Redis is up.
    shared_.interest->take(events_);
    if (!events_.empty()) apply(events_);
    bool lost = false;
    waited_ms_ = 0;
    for (std::size_t i = 0; i < links_.size() && !lost; ++i) {
      constexpr short ready = POLLIN | POLLERR | POLLHUP;
      Link& l = links_[i];
      lost = ((pollfds_[1 + 2 * i].revents & ready) && !read_from(l, l.redis, &Backplane::on_reply)) ||
             ((pollfds_[2 + 2 * i].revents & ready) && !read_from(l, l.registry, &Backplane::on_registry_reply));
    }
    if (lost) continue;
    const std::uint64_t later = base::monotonic_ms();
    // Waiting for the workers is not Redis's silence.
    for (Link& l : links_) {
      l.last_answer_ms = std::min(later, l.last_answer_ms + waited_ms_);
      l.registry_waiting_since_ms = std::min(later, l.registry_waiting_since_ms + waited_ms_);
    }
    for (std::size_t i = 0; i < links_.size(); ++i) keep_alive(links_[i], later);  // may disconnect all
    if (!connected()) continue;
    for (Link& l : links_) pump_commands(l);
    if (answered_) write_registry(later);
    if (!flush()) continue;
  }
  // Drain, step 3: the node's registry entries go before it exits.
  leave();
  counters_.state.store(BackplaneState::down);
}

// Every primary, two connections each; all or none, within
// connect_attempt_ms.
bool Backplane::connect() {
  std::string why;
  const bool fine = open_links(base::monotonic_ms() + connect_attempt_ms, why);
  if (!fine) {
    counters_.connect_failures_total.add();
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(warn, "backplane: cannot reach Redis at %s: %s; publishes answer 503 until it is back (next try "
                   "within %u ms; %u similar lines suppressed)",
             backplane::describe(shards_.address()), why, backoff_ms_, suppressed);
    for (Link& l : links_) {
      if (l.redis) redisFree(l.redis);
      if (l.registry) redisFree(l.registry);
    }
    links_.clear();
    return false;
  }
  counters_.connects_total.add();
  answered_ = false;
  const std::uint64_t now = base::monotonic_ms();
  last_renew_ms_ = last_registry_ms_ = 0;  // the node key and every count, at once
  for (const auto& [k, count] : names_) dirty_.insert(k);
  subscribe_all();
  for (Link& l : links_) {
    l.last_answer_ms = l.last_ping_ms = now;
    // A PING first: its answer says this Redis serves us (a Redis at
    // maxclients accepts, then answers an error and closes).
    (void)redisAppendCommand(l.redis, "PING");
    ++l.answers_outstanding;
    pump_commands(l);
  }
  // Up once every primary answers (on_reply): a stopped Redis's kernel
  // still accepts connections.
  return flush();
}

bool Backplane::open_links(std::uint64_t deadline_ms, std::string& why) {
  const auto tv = [](std::uint64_t ms) {
    return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
  };
  if (!shards_.discover(tv(connect_timeout_ms), deadline_ms, why)) return false;
  if (shards_.shards().size() > shards_max) {
    why = "more primaries than the backplane holds connections for (256)";
    return false;
  }
  links_.resize(shards_.shards().size());
  for (std::size_t i = 0; i < links_.size(); ++i) {
    const backplane::Endpoint& e = shards_.shards()[i];
    Link& l = links_[i];
    // Writes are bounded (answers_outstanding_max) and the socket stays
    // blocking for them, with a send timeout so that a Redis that stops
    // reading holds this thread at most that long; reads happen only
    // after poll() says there is something, so none blocks.
    for (redisContext** c : {&l.redis, &l.registry}) {
      const std::uint64_t now = base::monotonic_ms();
      if (stop_.load() || now >= deadline_ms) {
        why = stop_.load() ? "stopping" : "the attempt took longer than 5 s";
        return false;
      }
      *c = redisConnectWithTimeout(e.host.c_str(), e.port, tv(std::min(connect_timeout_ms, deadline_ms - now)));
      if (!*c || (*c)->err || redisSetTimeout(*c, tv(connect_timeout_ms)) != REDIS_OK ||
          redisEnableKeepAlive(*c) != REDIS_OK) {
        why = shards_.name(i) + ": " + (*c && (*c)->err ? (*c)->errstr : "cannot set up the connection");
        return false;
      }
    }
  }
  return true;
}

void Backplane::disconnect(std::string_view why) {
  counters_.state.store(BackplaneState::down);
  counters_.subscriptions.set(0);
  counters_.primaries.set(0);
  std::uint64_t suppressed = 0;
  if (lost_log_.allow(base::monotonic_ms(), suppressed))
    RG_LOG(warn, "backplane: lost Redis at %s (%s): publishes answer 503 until it is back; subscribers on this "
                 "node miss what is published meanwhile (%u similar lines suppressed)",
           backplane::describe(shards_.address()), std::string(why), suppressed);
  for (Link& l : links_) {
    redisFree(l.redis);
    redisFree(l.registry);
  }
  links_.clear();
  // Only a connection that stayed up resets the backoff: one refused after
  // accepting, or an error soon after the first answers, retries later.
  if (answered_ && base::monotonic_ms() - up_since_ms_ >= stable_ms) backoff_ms_ = backoff_min_ms;
  answered_ = false;
  next_attempt_ms_ = base::monotonic_ms() + backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, backoff_max_ms);
}

// A silent connection is given up; an idle one is pinged.
void Backplane::keep_alive(Link& link, std::uint64_t now_ms) {
  if (now_ms - link.last_answer_ms >= answer_timeout_ms) {
    disconnect(where(link) + ": no answer within 3 s, not even to PING");
    return;
  }
  if (link.registry_outstanding > 0 && now_ms - link.registry_waiting_since_ms >= answer_timeout_ms) {
    disconnect(where(link) + ": registry writes unanswered for 3 s");
    return;
  }
  if (now_ms - link.last_answer_ms >= ping_interval_ms && now_ms - link.last_ping_ms >= ping_interval_ms) {
    (void)redisAppendCommand(link.redis, "PING");
    ++link.answers_outstanding;
    link.last_ping_ms = now_ms;
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
      if (it->second == static_cast<std::uint64_t>(e.delta) && connected())
        link_of(k).to_send.emplace_back(true, std::move(k));
    } else if (const auto it = names_.find(k); it != names_.end()) {
      const auto less = static_cast<std::uint64_t>(-e.delta);
      it->second = it->second > less ? it->second - less : 0;
      if (it->second == 0) {
        names_.erase(it);
        if (connected()) link_of(k).to_send.emplace_back(false, std::move(k));
      }
    }
  }
  counters_.names.set(names_.size());
  // Without a connection, names_ is all there is: it is subscribed whole on
  // the next connect.
}

// Sends (un)subscribes while few enough answers are outstanding, in the
// order they were queued, each command one verb for up to 512 names (of
// one slot in a cluster: Redis refuses CROSSSLOT otherwise).
void Backplane::pump_commands(Link& link) {
  std::vector<std::string> keys;
  while (!link.to_send.empty() && link.answers_outstanding < answers_outstanding_max) {
    const bool subscribe = link.to_send.front().first;
    // One Redis takes names of any slots in one command; only a cluster
    // needs them apart (and the CRC16 per name).
    const bool cluster = shards_.cluster();
    const std::uint16_t slot = cluster ? backplane::slot(link.to_send.front().second) : 0;
    keys.clear();
    while (!link.to_send.empty() && link.to_send.front().first == subscribe && keys.size() < keys_per_command &&
           (!cluster || backplane::slot(link.to_send.front().second) == slot)) {
      std::string& k = link.to_send.front().second;
      if (names_.contains(k) == subscribe) {  // still wanted
        if (!subscribe) ++link.unsubscribing[k];
        keys.push_back(std::move(k));
      }
      link.to_send.pop_front();
    }
    if (!keys.empty()) command(link, subscribe ? "SSUBSCRIBE" : "SUNSUBSCRIBE", keys);
  }
}

// Appends one command; flush() sends it.  Every key gets one answer.
void Backplane::command(Link& link, const char* verb, const std::vector<std::string>& keys) {
  std::vector<const char*> argv{verb};
  std::vector<std::size_t> lens{std::strlen(verb)};
  for (const std::string& k : keys) {
    argv.push_back(k.data());
    lens.push_back(k.size());
  }
  (void)redisAppendCommandArgv(link.redis, static_cast<int>(argv.size()), argv.data(), lens.data());
  link.answers_outstanding += keys.size();
}

// In a cluster, sorted by slot so that names sharing one go in one command.
void Backplane::subscribe_all() {
  std::vector<std::pair<std::uint16_t, const std::string*>> order;
  order.reserve(names_.size());
  for (const auto& [k, count] : names_) order.emplace_back(shards_.cluster() ? backplane::slot(k) : 0, &k);
  if (shards_.cluster()) std::sort(order.begin(), order.end());
  for (Link& l : links_) {
    l.to_send.clear();
    l.unsubscribing.clear();
  }
  for (const auto& [slot, k] : order) link_of(*k).to_send.emplace_back(true, *k);
}

bool Backplane::flush() {
  for (Link& l : links_) {
    for (redisContext* c : {l.redis, l.registry}) {
      int done = 0;
      while (!done) {
        if (redisBufferWrite(c, &done) != REDIS_OK) {
          disconnect(where(l) + ": " + c->errstr);
          return false;
        }
      }
    }
  }
  return true;
}

// The registry: this node's count of each name that changed (HSET, or HDEL
// at 0), and its node key renewed (SET PX) a third of its TTL before it
// would lapse, pipelined: one round trip per interval per primary for the
// whole node, never one per connection.
void Backplane::write_registry(std::uint64_t now_ms) {
  if (now_ms - last_renew_ms_ >= node_ttl_ms_ / 3) {
    renew_node();
    last_renew_ms_ = now_ms;
  }
  std::uint64_t outstanding = 0;
  for (const Link& l : links_) outstanding += l.registry_outstanding;
  if (dirty_.empty() || now_ms - last_registry_ms_ < registry_flush_ms || outstanding >= registry_writes_max) return;
  last_registry_ms_ = now_ms;
  std::size_t written = 0;
  for (auto it = dirty_.begin(); it != dirty_.end() && written < registry_writes_max; ++written) {
    const std::string registry_key = *it + ":nodes";
    Link& l = link_of(*it);
    const auto found = names_.find(*it);
    if (found != names_.end()) {
      const std::string count = std::to_string(found->second);
      const char* argv[] = {"HSET", registry_key.data(), instance_.data(), count.data()};
      const std::size_t lens[] = {4, registry_key.size(), instance_.size(), count.size()};
      (void)redisAppendCommandArgv(l.registry, 4, argv, lens);
    } else {
      const char* argv[] = {"HDEL", registry_key.data(), instance_.data()};
      const std::size_t lens[] = {4, registry_key.size(), instance_.size()};
      (void)redisAppendCommandArgv(l.registry, 3, argv, lens);
    }
    if (l.registry_outstanding++ == 0) l.registry_waiting_since_ms = now_ms;
    l.registry_names.push_back(*it);
    dirty_.erase(it++);
  }
}

void Backplane::renew_node() {
  const std::string value = "{\"started\":\"" + instance_ + "\"}";
  const std::string ttl = std::to_string(node_ttl_ms_);
  const char* argv[] = {"SET", node_key_.data(), value.data(), "PX", ttl.data()};
  const std::size_t lens[] = {3, node_key_.size(), value.size(), 2, ttl.size()};
  Link& l = link_of(node_key_);
  (void)redisAppendCommandArgv(l.registry, 5, argv, lens);
  if (l.registry_outstanding++ == 0) l.registry_waiting_since_ms = base::monotonic_ms();
  l.registry_names.emplace_back();  // the node key: renewed again within a third of its TTL
}

void Backplane::on_registry_reply(Link& link, const redisReply& r) {
  if (link.registry_outstanding > 0) --link.registry_outstanding;
  link.registry_waiting_since_ms = base::monotonic_ms();
  std::string name;
  if (!link.registry_names.empty()) {
    name = std::move(link.registry_names.front());
    link.registry_names.pop_front();
  }
  if (r.type != REDIS_REPLY_ERROR) return;
  const std::string_view error(r.str, r.len);
  switch (backplane::parse_redirect(error).kind) {
    case backplane::Redirect::Kind::ask:
      // The name's slot is being migrated and its hash already went: the
      // write goes again at the next flush, by when the slot has moved
      // (MOVED then) or finished moving.
      if (!name.empty()) dirty_.insert(std::move(name));
      return;
    case backplane::Redirect::Kind::moved:
      slots_moved(link, error);
      return;
    case backplane::Redirect::Kind::none:
      disconnect(where(link) + ": Redis refused a registry write: " + std::string(error));
      return;
  }
}

// MOVED: the map is stale (or, with redis://, this Redis is a cluster
// node): everything is connected again after learning the map.
void Backplane::slots_moved(Link& link, std::string_view error) {
  counters_.slots_moved_total.add();
  disconnect(where(link) + ": slots moved (" + std::string(error) + "): learning the cluster's map again" +
             (shards_.cluster() ? "" : "; is this Redis a cluster node? then say redis-cluster://"));
}

// Drain, step 3: every field of this instance and its node key are deleted
// (within leave_timeout_ms), so no reader has to wait for the TTL.
void Backplane::leave() {
  if (!connected() || !answered_) return;
  for (const auto& [k, count] : names_) dirty_.insert(k);
  std::uint64_t sent = 0;
  std::vector<std::uint64_t> expected(links_.size());
  for (const std::string& k : dirty_) {
    const std::string registry_key = k + ":nodes";
    const char* argv[] = {"HDEL", registry_key.data(), instance_.data()};
    const std::size_t lens[] = {4, registry_key.size(), instance_.size()};
    Link& l = link_of(k);
    (void)redisAppendCommandArgv(l.registry, 3, argv, lens);
    ++expected[static_cast<std::size_t>(&l - links_.data())];
    ++sent;
  }
  const char* del[] = {"DEL", node_key_.data()};
  const std::size_t del_lens[] = {3, node_key_.size()};
  Link& node_link = link_of(node_key_);
  (void)redisAppendCommandArgv(node_link.registry, 2, del, del_lens);
  ++expected[static_cast<std::size_t>(&node_link - links_.data())];
  if (!flush()) return;
  // Blocking now, under one deadline for every link: answers to what was
  // still outstanding come first.
  const std::uint64_t deadline = base::monotonic_ms() + leave_timeout_ms;
  std::uint64_t want = 0, answered = 0;
  for (std::size_t i = 0; i < links_.size(); ++i) {
    Link& l = links_[i];
    const std::uint64_t n = expected[i] + l.registry_outstanding;
    want += n;
    for (std::uint64_t got = 0; got < n; ++got, ++answered) {
      const std::uint64_t now = base::monotonic_ms();
      if (now >= deadline) break;
      const std::uint64_t left = deadline - now;
      const timeval tv{static_cast<time_t>(left / 1000), static_cast<suseconds_t>(left % 1000 * 1000)};
      (void)redisSetTimeout(l.registry, tv);
      void* raw = nullptr;
      if (redisGetReply(l.registry, &raw) != REDIS_OK || !raw) break;
      freeReplyObject(raw);
    }
  }
  RG_LOG(info, "backplane: left the registry: %u names' entries and the node key deleted%s", sent,
         answered == want ? "" : " (not all confirmed: Redis did not answer in time; the TTL ends the rest)");
}

// Reads what Redis sent on `c` (poll said there is something) and hands
// each reply to `handle`; false once the connections are gone.
bool Backplane::read_from(Link& link, redisContext* c, void (Backplane::*handle)(Link&, const redisReply&)) {
  if (redisBufferRead(c) != REDIS_OK) {
    disconnect(where(link) + ": " + (c->err == REDIS_ERR_EOF ? "Redis closed the connection" : c->errstr));
    return false;
  }
  for (;;) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(c, &reply) != REDIS_OK) {
      disconnect(where(link) + ": " + c->errstr);
      return false;
    }
    if (!reply) return true;
    (this->*handle)(link, *static_cast<redisReply*>(reply));
    freeReplyObject(reply);
    if (!connected()) return false;  // the reply was an error: disconnected
  }
}

// The first answer on a link; up once every link has given one.
void Backplane::on_answer(Link& link) {
  link.last_answer_ms = base::monotonic_ms();
  if (link.answered) return;
  link.answered = true;
  if (!std::all_of(links_.begin(), links_.end(), [](const Link& l) { return l.answered; })) return;
  answered_ = true;
  up_since_ms_ = base::monotonic_ms();
  counters_.primaries.set(links_.size());
  counters_.state.store(BackplaneState::up);
  RG_LOG(info, "backplane: connected to Redis at %s (%u primar%s), subscribing to the %u names this node's clients "
               "hold",
         backplane::describe(shards_.address()), links_.size(), links_.size() == 1 ? "y" : "ies", names_.size());
}

// RESP2 pushes in subscribed mode: [kind, channel, count or payload].
void Backplane::on_reply(Link& link, const redisReply& r) {
  if (r.type == REDIS_REPLY_ERROR) {
    const std::string_view error(r.str, r.len);
    if (backplane::parse_redirect(error).kind != backplane::Redirect::Kind::none) {
      slots_moved(link, error);
      return;
    }
    // NOAUTH, NOPERM, an unknown SSUBSCRIBE (Redis before 7), a Redis at
    // maxclients, CLUSTERDOWN: what was asked for is not in place, and
    // carrying on would say "up" while nothing arrives.  Drop it and retry
    // with backoff.
    disconnect(where(link) + ": Redis answered an error: " + std::string(error) +
               (error.starts_with("CROSSSLOT") ? " (is this Redis a cluster node? then say redis-cluster://)"
                                               : " (the backplane needs Redis 7 or later)"));
    return;
  }
  on_answer(link);
  // PING's answer: "PONG" while the connection holds no subscription (the
  // first one always), ["pong", ""] once it does.
  if (r.type == REDIS_REPLY_STATUS) {
    if (link.answers_outstanding > 0) --link.answers_outstanding;
    return;
  }
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 2 || r.element[0]->type != REDIS_REPLY_STRING) return;
  const std::string_view kind(r.element[0]->str, r.element[0]->len);
  if (kind == "pong") {
    if (link.answers_outstanding > 0) --link.answers_outstanding;
    return;
  }
  if (r.elements != 3) return;
  if (kind == "smessage" && r.element[1]->type == REDIS_REPLY_STRING && r.element[2]->type == REDIS_REPLY_STRING) {
    deliver(*r.element[1], *r.element[2]);
    return;
  }
  if ((kind != "ssubscribe" && kind != "sunsubscribe") || r.element[2]->type != REDIS_REPLY_INTEGER) return;
  if (kind == "sunsubscribe" && r.element[1]->type == REDIS_REPLY_STRING) {
    const std::string k(r.element[1]->str, r.element[1]->len);
    const auto asked = link.unsubscribing.find(k);
    if (asked == link.unsubscribing.end()) {
      // Not asked for: Redis dropped the name because its slot now lives
      // on another primary.  Learn the map again and subscribe anew.
      counters_.slots_moved_total.add();
      disconnect(where(link) + ": Redis unsubscribed " + k + " (its slot moved): learning the cluster's map again");
      return;
    }
    if (--asked->second == 0) link.unsubscribing.erase(asked);
  }
  if (link.answers_outstanding > 0) --link.answers_outstanding;
  link.subscriptions = static_cast<std::uint64_t>(r.element[2]->integer);
  std::uint64_t total = 0;
  for (const Link& l : links_) total += l.subscriptions;
  counters_.subscriptions.set(total);
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
  // A full mailbox: wait for the workers (see mailbox_wait_ms).
  DeliverySource::Posted posted = source_.post(p);
  while (posted == DeliverySource::Posted::mailbox_full && waited_ms_ < mailbox_wait_ms && !stop_.load() &&
         !shared_.stopping.load()) {
    const std::uint64_t before = base::monotonic_ms();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    posted = source_.post(p);
    const std::uint64_t waited = std::max<std::uint64_t>(base::monotonic_ms() - before, 1);
    waited_ms_ += waited;
    counters_.mailbox_waits_total.add(waited);
  }
  if (posted == DeliverySource::Posted::mailbox_full) {
    counters_.dropped_total.add();
    std::uint64_t suppressed = 0;
    if (log_.allow(base::monotonic_ms(), suppressed))
      RG_LOG(warn, "backplane: a worker's mailbox stayed full for 2 s (mailbox_size): dropped message %s on %s "
                   "(%u similar lines suppressed)",
             std::string(m.id), std::string(k.name), suppressed);
  } else {
    counters_.messages_total.add();
  }
  p->unref();
}

}  // namespace rg::server
