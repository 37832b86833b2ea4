// The publish API (control/publisher.h): names, ids, posting through the delivery source, the JSON answer.
#include "control/publisher.h"

#include <unistd.h>

#include <absl/strings/str_format.h>

#include <ctime>
#include <cstring>

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

Publisher::~Publisher() {
  if (redis_) redisFree(redis_);
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
  // The receiving side knows first when Redis is gone: no publish waits
  // out a timeout then.
  if (shared_.backplane.state.load() != BackplaneState::up) return down("not connected");
  const timeval tv{static_cast<time_t>(redis_timeout_ms / 1000),
                   static_cast<suseconds_t>(redis_timeout_ms % 1000 * 1000)};
  const std::string id = id_prefix_ + std::to_string(++sequence_);
  const std::string key = proto::backplane::key(
      to_user ? proto::backplane::Target::user : proto::backplane::Target::channel, name);
  const std::string payload = proto::backplane::encode(id, body);
  const char* argv[] = {"SPUBLISH", key.data(), payload.data()};
  const std::size_t lens[] = {8, key.size(), payload.size()};
  redisReply* reply = nullptr;
  // A connection kept from an earlier publish may have died with a Redis
  // that came back since: one retry on a fresh one.  A command that failed
  // on I/O was not executed as far as we know, so the retry cannot make a
  // duplicate unless Redis took it and the answer was lost (then the
  // subscribers see the same id twice, which issue 18's idempotency keys
  // close).
  for (int attempt = 0; attempt < 2 && !reply; ++attempt) {
    const bool reused = redis_ != nullptr;
    if (!redis_) {
      redis_ = redisConnectWithTimeout(redis_address_.host.c_str(), redis_address_.port, tv);
      if (!redis_ || redis_->err || redisSetTimeout(redis_, tv) != REDIS_OK) {
        const std::string why = redis_ ? redis_->errstr : "out of memory";
        if (redis_) redisFree(redis_);
        redis_ = nullptr;
        return down(why);
      }
    }
    reply = static_cast<redisReply*>(redisCommandArgv(redis_, 3, argv, lens));
    if (reply || !reused) break;
    redisFree(redis_);
    redis_ = nullptr;
  }
  if (!reply || reply->type != REDIS_REPLY_INTEGER) {
    const std::string why = !reply ? std::string(redis_->errstr)
                                   : reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len)
                                                                      : std::string("an unexpected answer");
    if (reply) freeReplyObject(reply);
    // After an I/O error the context is spent; after a Redis error it is not.
    if (redis_->err) {
      redisFree(redis_);
      redis_ = nullptr;
    }
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
