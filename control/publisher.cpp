// The publish API (control/publisher.h): names, ids, posting through the delivery source, the JSON answer.
#include "control/publisher.h"

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
    proto::backplane::Address address;
    if (proto::backplane::parse_url(shared.config.backplane, address, error))  // validated at start
      redis_ = std::make_unique<RoutedRedis>(std::move(address), redis_timeout_ms);
  }
}

Publisher::~Publisher() = default;

// The receiving side knows first when Redis is gone: no request waits out
// a timeout then.
bool Publisher::backplane_up(std::string& why) const {
  if (shared_.backplane.state.load() == BackplaneState::up) return true;
  why = "not connected";
  return false;
}

// The fleet's registry: a name's count per node instance, the instances
// that are no longer alive left out (and their fields deleted).  Each
// command under redis_timeout_ms: the admin thread also answers /readyz,
// which a balancer times out.
Publisher::Outcome Publisher::lookup(Publication::Target target, std::string_view name) {
  const bool user = target == Publication::Target::user;
  if (!redis_)
    return {501, error_json("no_registry", "the fleet registry needs the backplane (backplane = redis://HOST:PORT or redis-cluster://SEEDS)")};
  if (const pubsub::NameCheck check = pubsub::check_name(name); !check.ok())
    return {400, error_json("bad_request", absl::StrFormat("%s name is %s", user ? "user" : "channel",
                                                           pubsub::name_error_text(check.error)))};
  const auto down = [&](std::string_view why) {
    return Outcome{503, error_json("backplane_down", absl::StrFormat("the Redis backplane is unreachable (%s)", why))};
  };
  if (std::string why; !backplane_up(why)) return down(why);
  const std::string key = proto::backplane::registry_key(
      user ? proto::backplane::Target::user : proto::backplane::Target::channel, name);
  const char* hgetall[] = {"HGETALL", key.data()};
  const std::size_t hgetall_lens[] = {7, key.size()};
  RoutedRedis::Result fields = redis_->command(key, 2, hgetall, hgetall_lens);
  if (fields.status != RoutedRedis::Result::Status::answered) return down(fields.why);
  struct Entry {
    std::string instance;
    long long count;
    bool alive;
  };
  std::vector<Entry> entries;
  if (fields.reply->type == REDIS_REPLY_ARRAY)
    for (std::size_t i = 0; i + 1 < fields.reply->elements; i += 2)
      entries.push_back({std::string(fields.reply->element[i]->str, fields.reply->element[i]->len),
                         std::strtoll(fields.reply->element[i + 1]->str, nullptr, 10), false});
  // Which instances are alive: an EXISTS each (a fleet's few nodes; in a
  // cluster each node key has its own slot).
  for (Entry& e : entries) {
    const std::string k = proto::backplane::node_key(e.instance);
    const char* argv[] = {"EXISTS", k.data()};
    const std::size_t lens[] = {6, k.size()};
    RoutedRedis::Result r = redis_->command(k, 2, argv, lens);
    if (r.status != RoutedRedis::Result::Status::answered) return down(r.why);
    e.alive = r.reply->type == REDIS_REPLY_INTEGER && r.reply->integer == 1;
  }
  std::string nodes;
  long long sum = 0;
  std::vector<const std::string*> dead;
  for (const Entry& e : entries) {
    if (!e.alive) {
      dead.push_back(&e.instance);
      continue;
    }
    const std::string_view node = proto::backplane::instance_node(e.instance);
    if (node.empty() || e.count <= 0) continue;
    sum += e.count;
    absl::StrAppendFormat(&nodes, R"(%s{"node":"%s","instance":"%s","%s":%d})", nodes.empty() ? "" : ",", node,
                          e.instance, user ? "connections" : "subscribers", e.count);
  }
  // A node that died without a word left its fields: they go now.
  if (!dead.empty()) {
    std::vector<const char*> argv{"HDEL", key.data()};
    std::vector<std::size_t> lens{4, key.size()};
    for (const std::string* d : dead) {
      argv.push_back(d->data());
      lens.push_back(d->size());
    }
    (void)redis_->command(key, static_cast<int>(argv.size()), argv.data(), lens.data());
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
  if (std::string why; !backplane_up(why)) return down(why);
  const std::string id = id_prefix_ + std::to_string(++sequence_);
  const std::string key = proto::backplane::key(
      to_user ? proto::backplane::Target::user : proto::backplane::Target::channel, name);
  const std::string payload = proto::backplane::encode(id, body);
  const char* argv[] = {"SPUBLISH", key.data(), payload.data()};
  const std::size_t lens[] = {8, key.size(), payload.size()};
  // Not sent (or redirected, which means not run): 503, nothing published.
  // Sent whole without an answer: the outcome is unknown (504), and nothing
  // is retried here, so a message is never published twice by this node.
  const RoutedRedis::Result r = redis_->command(key, 3, argv, lens);
  if (r.status == RoutedRedis::Result::Status::not_sent) return down(r.why);
  if (r.status == RoutedRedis::Result::Status::no_answer) {
    counters.refused[static_cast<std::size_t>(PublishRefusal::backplane_timeout)].add();
    return {504, error_json("backplane_timeout",
                            absl::StrFormat("Redis took the message but did not answer within 1 s (%s): it may "
                                            "have been delivered; a retry may deliver it twice",
                                            r.why))};
  }
  if (r.reply->type != REDIS_REPLY_INTEGER)
    return down(r.reply->type == REDIS_REPLY_ERROR ? std::string(r.reply->str, r.reply->len)
                                                   : std::string("an unexpected answer"));
  const long long nodes = r.reply->integer;
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
  if (redis_) return publish_to_backplane(target, name, body);
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
