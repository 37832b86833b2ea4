// The publish API (control/publisher.h): names, ids, posting through the delivery source, the JSON answer.
#include "control/publisher.h"

#include <poll.h>
#include <unistd.h>

#include <absl/strings/str_format.h>

#include <ctime>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"

namespace rg::server {

namespace pubsub = rg::proto::pubsub;

namespace {

std::string error_json(std::string_view error, std::string_view message) {
  // Both are server text or valid names: nothing to escape.
  return absl::StrFormat(R"({"error":"%s","message":"%s"})", error, message);
}

}  // namespace

Publisher::Publisher(Shared& shared) : shared_(shared), source_(shared) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  id_prefix_ = absl::StrFormat("%x-", static_cast<std::uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000);
  if (shared.config.backplane_enabled()) {
    std::string error;
    backplane_ = proto::backplane::parse_url(shared.config.backplane, redis_address_, error);  // validated at start
  }
}

Publisher::~Publisher() { drop_connection(); }

// A connection to the backplane's Redis for one request, under one
// deadline (redis_timeout_ms) for the connect, the send and the answer: the
// admin thread also answers /readyz, which a balancer times out.
bool Publisher::ready_connection(std::string& why) {
  // The receiving side knows first when Redis is gone: no request waits out
  // a timeout then.
  if (shared_.backplane.state.load() != BackplaneState::up) {
    why = "not connected";
    return false;
  }
  // A kept connection that Redis closed, or that has anything unread (it
  // only ever carries our own commands and their answers), is not reused.
  if (redis_) {
    pollfd p{redis_->fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) != 0) drop_connection();
  }
  const timeval tv{static_cast<time_t>(redis_timeout_ms / 1000),
                   static_cast<suseconds_t>(redis_timeout_ms % 1000 * 1000)};
  if (!redis_) {
    redis_ = redisConnectWithTimeout(redis_address_.host.c_str(), redis_address_.port, tv);
    if (!redis_ || redis_->err) {
      why = redis_ ? redis_->errstr : "out of memory";
      drop_connection();
      return false;
    }
  }
  if (redisSetTimeout(redis_, tv) != REDIS_OK) {
    why = "cannot set the connection's timeout";
    drop_connection();
    return false;
  }
  return true;
}

void Publisher::drop_connection() {
  if (redis_) redisFree(redis_);
  redis_ = nullptr;
}

// The fleet's registry: a name's count per node instance, the instances
// that are no longer alive left out (and their fields deleted).
Publisher::Outcome Publisher::lookup(Publication::Target target, std::string_view name) {
  const bool user = target == Publication::Target::user;
  if (!backplane_)
    return {501, error_json("no_registry", "the fleet registry needs the backplane (backplane = redis://HOST:PORT)")};
  if (const pubsub::NameCheck check = pubsub::check_name(name); !check.ok())
    return {400, error_json("bad_request", absl::StrFormat("%s name is %s", user ? "user" : "channel",
                                                           pubsub::name_error_text(check.error)))};
  const auto down = [&](std::string_view why) {
    return Outcome{503, error_json("backplane_down", absl::StrFormat("the Redis backplane is unreachable (%s)", why))};
  };
  if (std::string why; !ready_connection(why)) return down(why);
  const std::string key = proto::backplane::registry_key(
      user ? proto::backplane::Target::user : proto::backplane::Target::channel, name);
  const auto run = [&](int argc, const char** argv, const std::size_t* lens) -> redisReply* {
    auto* r = static_cast<redisReply*>(redisCommandArgv(redis_, argc, argv, lens));
    if (!r) drop_connection();
    return r;
  };
  const char* hgetall[] = {"HGETALL", key.data()};
  const std::size_t hgetall_lens[] = {7, key.size()};
  redisReply* fields = run(2, hgetall, hgetall_lens);
  if (!fields) return down("no answer to HGETALL");
  struct Entry {
    std::string instance;
    long long count;
  };
  std::vector<Entry> entries;
  if (fields->type == REDIS_REPLY_ARRAY)
    for (std::size_t i = 0; i + 1 < fields->elements; i += 2)
      entries.push_back({std::string(fields->element[i]->str, fields->element[i]->len),
                         std::strtoll(fields->element[i + 1]->str, nullptr, 10)});
  freeReplyObject(fields);
  // Which instances are alive: one pipelined EXISTS each.
  std::vector<std::string> node_keys;
  for (const Entry& e : entries) node_keys.push_back(proto::backplane::node_key(e.instance));
  for (const std::string& k : node_keys) {
    const char* argv[] = {"EXISTS", k.data()};
    const std::size_t lens[] = {6, k.size()};
    (void)redisAppendCommandArgv(redis_, 2, argv, lens);
  }
  std::vector<bool> alive(entries.size(), false);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(redis_, &raw) != REDIS_OK || !raw) {
      drop_connection();
      return down("no answer to EXISTS");
    }
    auto* r = static_cast<redisReply*>(raw);
    alive[i] = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
  }
  std::string nodes;
  long long sum = 0;
  std::vector<const std::string*> dead;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (!alive[i]) {
      dead.push_back(&entries[i].instance);
      continue;
    }
    const std::string_view node = proto::backplane::instance_node(entries[i].instance);
    if (node.empty() || entries[i].count <= 0) continue;
    sum += entries[i].count;
    absl::StrAppendFormat(&nodes, R"(%s{"node":"%s","instance":"%s","%s":%d})", nodes.empty() ? "" : ",", node,
                          entries[i].instance, user ? "connections" : "subscribers", entries[i].count);
  }
  // A node that died without a word left its fields: they go now.
  if (!dead.empty()) {
    std::vector<const char*> argv{"HDEL", key.data()};
    std::vector<std::size_t> lens{4, key.size()};
    for (const std::string* d : dead) {
      argv.push_back(d->data());
      lens.push_back(d->size());
    }
    if (redisReply* r = run(static_cast<int>(argv.size()), argv.data(), lens.data())) freeReplyObject(r);
  }
  return {200, absl::StrFormat(R"({"%s":"%s","%s":%d,"nodes":[%s]})", user ? "user" : "channel", name,
                               user ? "connections" : "subscribers", sum, nodes)};
}

Publisher::Outcome Publisher::publish_to_backplane(Publication::Target target, std::string_view name,
                                                   std::span<const std::uint8_t> body) {
  PublishCounters& counters = shared_.publish;
  const bool to_user = target == Publication::Target::user;
  const auto down = [&](std::string_view why) {
    counters.refused[static_cast<std::size_t>(PublishRefusal::backplane_down)].add();
    return Outcome{503, error_json("backplane_down",
                                   absl::StrFormat("the Redis backplane is unreachable (%s): nothing was published; "
                                                   "retry",
                                                   why))};
  };
  if (std::string why; !ready_connection(why)) return down(why);
  const std::string id = id_prefix_ + std::to_string(++sequence_);
  const std::string key = proto::backplane::key(
      to_user ? proto::backplane::Target::user : proto::backplane::Target::channel, name);
  const std::string payload = proto::backplane::encode(id, body);
  const char* argv[] = {"SPUBLISH", key.data(), payload.data()};
  const std::size_t lens[] = {8, key.size(), payload.size()};
  // Sent, then answered, apart: until the whole command is written Redis
  // cannot have run it (503, nothing published); once it is, a missing
  // answer leaves the outcome unknown (504), and nothing is retried here,
  // so a message is never published twice by this node.
  (void)redisAppendCommandArgv(redis_, 3, argv, lens);
  for (int done = 0; !done;) {
    if (redisBufferWrite(redis_, &done) != REDIS_OK) {
      const std::string why = redis_->errstr;
      drop_connection();
      return down(why);
    }
  }
  void* raw = nullptr;
  if (redisGetReply(redis_, &raw) != REDIS_OK || !raw) {
    const std::string why = redis_->errstr;
    drop_connection();
    counters.refused[static_cast<std::size_t>(PublishRefusal::backplane_timeout)].add();
    return {504, error_json("backplane_timeout",
                            absl::StrFormat("Redis took the message but did not answer within 1 s (%s): it may "
                                            "have been delivered; a retry may deliver it twice",
                                            why))};
  }
  auto* reply = static_cast<redisReply*>(raw);
  if (reply->type != REDIS_REPLY_INTEGER) {
    const std::string why =
        reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len) : std::string("an unexpected answer");
    freeReplyObject(reply);
    return down(why);
  }
  const long long nodes = reply->integer;
  freeReplyObject(reply);
  counters.publishes_total.add();
  if (to_user) counters.user_sends_total.add();
  counters.body_bytes_total.add(body.size());
  // Recipients are counted on each node that delivers; what Redis can say
  // is how many nodes hold subscribers of the name.
  return {200, absl::StrFormat(R"({"%s":"%s","id":"%s","nodes":%d})", to_user ? "user" : "channel", name, id,
                               nodes)};
}

Publisher::Outcome Publisher::publish(Publication::Target target, std::string_view name,
                                      std::span<const std::uint8_t> body) {
  PublishCounters& counters = shared_.publish;
  const bool to_user = target == Publication::Target::user;
  if (const pubsub::NameCheck check = pubsub::check_name(name); !check.ok()) {
    counters.refused[static_cast<std::size_t>(PublishRefusal::bad_request)].add();
    return {400, error_json("bad_request", absl::StrFormat("%s name is %s", to_user ? "user" : "channel",
                                                           pubsub::name_error_text(check.error)))};
  }
  if (backplane_) return publish_to_backplane(target, name, body);
  Publication* p = source_.frame(target, name, id_prefix_ + std::to_string(++sequence_), body);
  if (!p) return {503, error_json("out_of_memory", "could not allocate the message; retry")};
  if (source_.post(p) == DeliverySource::Posted::mailbox_full) {
    p->unref();
    counters.refused[static_cast<std::size_t>(PublishRefusal::mailbox_full)].add();
    return {503, error_json("mailbox_full",
                            "a worker's mailbox is full (mailbox_size): subscribers are not keeping up; retry")};
  }

  const std::uint32_t late = p->wait_counted(count_wait_ms);
  const std::uint64_t recipients = p->recipients.load(std::memory_order_relaxed);
  counters.publishes_total.add();
  if (to_user) counters.user_sends_total.add();
  counters.body_bytes_total.add(body.size());
  counters.recipients_total.add(recipients);
  Outcome out{late == 0 ? 200 : 202,
              absl::StrFormat(R"({"%s":"%s","id":"%s","recipients":%d)", to_user ? "user" : "channel", name,
                              p->id, recipients)};
  // 202: accepted and on its way, but a worker did not count in time, so
  // the figure is a lower bound.
  if (late > 0) absl::StrAppendFormat(&out.body, R"(,"workers_pending":%d)", late);
  out.body += "}";
  p->unref();
  return out;
}

}  // namespace rg::server
