// Slots to primaries, and commands that follow them (control/redis_shards.h).
#include "control/redis_shards.h"

#include <poll.h>

#include <absl/strings/str_format.h>

#include "base/clock.h"

namespace rg::server {

namespace backplane = rg::proto::backplane;

namespace {

constexpr std::uint16_t no_shard = 0xFFFF;

bool same(const backplane::Endpoint& a, const backplane::Endpoint& b) { return a.port == b.port && a.host == b.host; }

std::string_view text(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
             ? std::string_view(r->str, r->len)
             : std::string_view();
}

timeval to_timeval(std::uint64_t ms) {
  return {static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
}

}  // namespace

ShardMap::ShardMap(backplane::Address address) : address_(std::move(address)) {
  if (address_.cluster) {
    slot_shard_.assign(backplane::slots, no_shard);
  } else {
    shards_ = address_.endpoints;  // exactly one
  }
}

std::string ShardMap::name(std::size_t shard) const {
  const backplane::Endpoint& e = shards_[shard];
  return e.host.find(':') != std::string::npos ? absl::StrFormat("[%s]:%u", e.host, e.port)
                                               : absl::StrFormat("%s:%u", e.host, e.port);
}

std::size_t ShardMap::shard_of(std::string_view key) const noexcept {
  if (!address_.cluster) return 0;
  const std::uint16_t s = slot_shard_[backplane::slot(key)];
  return s == no_shard ? 0 : s;  // discover() leaves no slot unserved
}

std::size_t ShardMap::find_or_add(backplane::Endpoint to, std::size_t from) {
  if (to.host.empty()) to.host = shards_[from].host;
  for (std::size_t i = 0; i < shards_.size(); ++i)
    if (same(shards_[i], to)) return i;
  shards_.push_back(std::move(to));
  return shards_.size() - 1;
}

std::size_t ShardMap::moved(std::uint16_t slot, backplane::Endpoint to, std::size_t from) {
  const std::size_t shard = find_or_add(std::move(to), from);
  if (address_.cluster) slot_shard_[slot] = static_cast<std::uint16_t>(shard);
  return shard;
}

bool ShardMap::discover(timeval timeout, std::uint64_t deadline_ms, std::string& why) {
  if (!address_.cluster) return true;
  // What the last map knew first (after MOVED it names where slots went),
  // then the seeds (an operator's list; a cluster whose primaries were all
  // replaced is still found through them).
  std::vector<backplane::Endpoint> ask = shards_;
  for (const backplane::Endpoint& e : address_.endpoints)
    if (std::none_of(ask.begin(), ask.end(), [&](const backplane::Endpoint& a) { return same(a, e); })) ask.push_back(e);
  why.clear();
  for (const backplane::Endpoint& seed : ask) {
    if (base::monotonic_ms() >= deadline_ms) {
      why += why.empty() ? "no time left to ask the cluster" : "; no time left to ask more nodes";
      return false;
    }
    redisContext* c = redisConnectWithTimeout(seed.host.c_str(), seed.port, timeout);
    const auto fail = [&](std::string_view what) {
      if (!why.empty()) why += "; ";
      absl::StrAppendFormat(&why, "%s:%u: %s", seed.host, seed.port, what);
    };
    if (!c || c->err) {
      fail(c ? c->errstr : "out of memory");
      if (c) redisFree(c);
      continue;
    }
    (void)redisSetTimeout(c, timeout);
    auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
    if (!r) {
      fail(c->errstr);
      redisFree(c);
      continue;
    }
    // [[start, end, [host, port, id...], replicas...], ...]
    std::vector<backplane::Endpoint> shards;
    std::vector<std::uint16_t> slot_shard(backplane::slots, no_shard);
    bool bad = r->type != REDIS_REPLY_ARRAY;
    if (r->type == REDIS_REPLY_ERROR) fail(text(r));
    for (std::size_t i = 0; !bad && i < r->elements; ++i) {
      const redisReply* range = r->element[i];
      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 || range->element[0]->type != REDIS_REPLY_INTEGER ||
          range->element[1]->type != REDIS_REPLY_INTEGER || range->element[2]->type != REDIS_REPLY_ARRAY ||
          range->element[2]->elements < 2 || range->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
        bad = true;
        break;
      }
      const long long first = range->element[0]->integer;
      const long long last = range->element[1]->integer;
      const long long port = range->element[2]->element[1]->integer;
      if (first < 0 || last >= backplane::slots || first > last || port < 1 || port > 65535) {
        bad = true;
        break;
      }
      // An empty host ("" or "?") means the node we asked.
      backplane::Endpoint primary{std::string(text(range->element[2]->element[0])), static_cast<std::uint16_t>(port)};
      if (primary.host.empty() || primary.host == "?") primary.host = seed.host;
      std::size_t shard = 0;
      while (shard < shards.size() && !same(shards[shard], primary)) ++shard;
      if (shard == shards.size()) shards.push_back(std::move(primary));
      for (long long s = first; s <= last; ++s) slot_shard[static_cast<std::size_t>(s)] = static_cast<std::uint16_t>(shard);
    }
    if (bad && r->type != REDIS_REPLY_ERROR) fail("CLUSTER SLOTS answered something unexpected (is it a cluster?)");
    freeReplyObject(r);
    redisFree(c);
    if (bad) continue;
    const auto unserved = std::count(slot_shard.begin(), slot_shard.end(), no_shard);
    if (unserved > 0) {
      fail(absl::StrFormat("%d of 16384 slots have no primary (is the cluster still forming, or down?)", unserved));
      continue;
    }
    shards_ = std::move(shards);
    slot_shard_ = std::move(slot_shard);
    return true;
  }
  return false;
}

RoutedRedis::RoutedRedis(backplane::Address address, std::uint64_t timeout_ms)
    : map_(std::move(address)), timeout_ms_(timeout_ms) {}

RoutedRedis::~RoutedRedis() { drop_all(); }

void RoutedRedis::drop_all() {
  for (auto& [name, c] : connections_) redisFree(c);
  connections_.clear();
}

void RoutedRedis::drop(std::size_t shard) {
  if (const auto it = connections_.find(map_.name(shard)); it != connections_.end()) {
    redisFree(it->second);
    connections_.erase(it);
  }
}

// A kept connection that Redis closed, or that has anything unread (it
// only ever carries our own commands and their answers), is not reused.
redisContext* RoutedRedis::connection(std::size_t shard, std::uint64_t deadline_ms, std::string& why) {
  const std::string name = map_.name(shard);
  const std::uint64_t now = base::monotonic_ms();
  if (now >= deadline_ms) {
    why = absl::StrFormat("%s: no time left within %u ms", name, timeout_ms_);
    return nullptr;
  }
  const timeval tv = to_timeval(deadline_ms - now);
  if (const auto it = connections_.find(name); it != connections_.end()) {
    pollfd p{it->second->fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 0 && redisSetTimeout(it->second, tv) == REDIS_OK) return it->second;
    redisFree(it->second);
    connections_.erase(it);
  }
  const backplane::Endpoint& e = map_.shards()[shard];
  redisContext* c = redisConnectWithTimeout(e.host.c_str(), e.port, tv);
  if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
    why = absl::StrFormat("%s: %s", name, c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return nullptr;
  }
  connections_.emplace(name, c);
  return c;
}

RoutedRedis::Result RoutedRedis::command(std::string_view key, int argc, const char** argv, const std::size_t* lens) {
  Result out;
  const std::uint64_t deadline = base::monotonic_ms() + timeout_ms_;
  if (!map_known_) {
    if (base::monotonic_ms() < map_retry_at_ms_) {
      out.why = "the cluster's map is unknown (learning it failed less than 1 s ago)";
      return out;
    }
    if (!map_.discover(to_timeval(timeout_ms_), deadline, out.why)) {
      map_retry_at_ms_ = base::monotonic_ms() + map_retry_ms;
      return out;
    }
    map_known_ = true;
  }
  std::size_t shard = map_.shard_of(key);
  bool asking = false;
  for (int hop = 0; hop <= redirects_max; ++hop) {
    redisContext* c = connection(shard, deadline, out.why);
    if (!c) return out;
    // Sent, then answered, apart: until the whole command is written Redis
    // cannot have run it; once it is, a missing answer leaves the outcome
    // unknown, and nothing is retried.
    if (asking) (void)redisAppendCommand(c, "ASKING");
    (void)redisAppendCommandArgv(c, argc, argv, lens);
    for (int done = 0; !done;) {
      if (redisBufferWrite(c, &done) != REDIS_OK) {
        out.why = absl::StrFormat("%s: %s", map_.name(shard), c->errstr);
        drop(shard);
        return out;
      }
    }
    for (int answers = asking ? 2 : 1; answers > 0; --answers) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK || !raw) {
        out.status = Result::Status::no_answer;
        out.why = absl::StrFormat("%s: %s", map_.name(shard), c->errstr);
        drop(shard);
        return out;
      }
      out.reply.reset(static_cast<redisReply*>(raw));
    }
    out.status = Result::Status::answered;
    if (out.reply->type != REDIS_REPLY_ERROR) return out;
    const backplane::Redirect r = backplane::parse_redirect(text(out.reply.get()));
    if (r.kind == backplane::Redirect::Kind::none) return out;
    // A redirection: the command did not run; send it where it belongs.
    out.status = Result::Status::not_sent;
    out.reply.reset();
    if (r.kind == backplane::Redirect::Kind::moved) {
      shard = map_.moved(r.slot, r.to, shard);
      map_known_ = false;  // slots moved: learn the whole map before the next command
      asking = false;
    } else {
      shard = map_.find_or_add(r.to, shard);
      asking = true;
    }
  }
  out.why = absl::StrFormat("more than %d redirections (the cluster is resharding?)", redirects_max);
  return out;
}

}  // namespace rg::server
