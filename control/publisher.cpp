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
