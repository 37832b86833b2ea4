#include "server/publisher.h"

#include <time.h>
#include <unistd.h>

#include <absl/strings/str_format.h>

#include <cstring>

#include "server/log.h"

namespace rg::server {

namespace pubsub = rg::proto::pubsub;

const char* publish_refusal_name(PublishRefusal r) noexcept {
  switch (r) {
    case PublishRefusal::bad_request: return "bad_request";
    case PublishRefusal::unauthorized: return "unauthorized";
    case PublishRefusal::too_large: return "too_large";
    case PublishRefusal::mailbox_full: return "mailbox_full";
    case PublishRefusal::count: break;
  }
  return "other";
}

namespace {

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string error_json(std::string_view error, std::string_view message) {
  // Both are server text or valid names: nothing to escape.
  return absl::StrFormat(R"({"error":"%s","message":"%s"})", error, message);
}

void bump(std::atomic<std::uint64_t>& a, std::uint64_t by = 1) {
  a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);  // single writer
}

}  // namespace

Publisher::Publisher(Shared& shared)
    : shared_(shared), classifier_(shared.config.max_publish_size) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  id_prefix_ = absl::StrFormat("%x-", static_cast<std::uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000);
}

void Publisher::start() {
  if (!shared_.wake_msg_ring) return;
  ring::RingParams params;
  params.sq_entries = 64;
  params.cq_entries = 256;
  std::string error;
  if (ring_.init(params, error) == 0 && ring_.supports(IORING_OP_MSG_RING)) {
    msg_ring_ = true;
    return;
  }
  RG_LOG(warn, "publisher: no IORING_OP_MSG_RING ring (%s): waking workers through their eventfds", error);
}

bool Publisher::raw_channel(std::string_view channel) const {
  for (const std::string& p : shared_.config.raw_channels)
    if (pubsub::pattern_matches(p, channel)) return true;
  return false;
}

void Publisher::wake_all() {
  bool queued = false;
  for (auto& box : shared_.mailboxes) {
    // One wake-up per batch: the worker clears the flag before it drains.
    if (box->wake_pending.exchange(true)) continue;
    const int ring_fd = box->ring_fd.load(std::memory_order_relaxed);
    if (msg_ring_ && ring_fd >= 0 && ring_.msg_ring(ring_fd, {mailbox_wake_op, 0, 0}, {mailbox_wake_op, 0, 0})) {
      queued = true;
    } else if (box->event_fd >= 0) {
      const std::uint64_t one = 1;
      (void)!write(box->event_fd, &one, sizeof one);
    }
  }
  if (!queued) return;
  // Every worker's MSG_RING in one submit, not one system call per worker.
  ring_.submit();
  // Only failures post a CQE here (skip_success); reap them so the CQ
  // never fills.  A failed wake-up is covered by the worker's tick.
  std::array<ring::Completion, 16> cqes;
  ring_.drain(cqes, 1, [](const ring::Completion& c) {
    RG_LOG(warn, "publisher: waking a worker with MSG_RING failed: %s", std::strerror(c.error()));
  });
}

Publisher::Outcome Publisher::publish(Publication::Target target, std::string_view name,
                                      std::span<const std::uint8_t> body) {
  PublishCounters& counters = shared_.publish;
  const bool to_user = target == Publication::Target::user;
  if (const pubsub::NameCheck check = pubsub::check_name(name); !check.ok()) {
    bump(counters.refused[static_cast<std::size_t>(PublishRefusal::bad_request)]);
    return {400, error_json("bad_request", absl::StrFormat("%s name is %s", to_user ? "user" : "channel",
                                                           pubsub::name_error_text(check.error)))};
  }
  auto* p = new Publication;
  p->target = target;
  p->name = std::string(name);
  p->id = id_prefix_ + std::to_string(++sequence_);
  pubsub::MessageSpec spec;
  spec.channel = to_user ? std::string_view{} : std::string_view(p->name);
  spec.user = to_user ? std::string_view(p->name) : std::string_view{};
  spec.id = p->id;
  spec.body = body;
  spec.kind = classifier_.classify(body);
  spec.envelope = !to_user && raw_channel(name) ? pubsub::Envelope::raw : pubsub::Envelope::json;
  const std::size_t capacity = pubsub::message_frame_bytes_max(body.size());
  p->storage = std::make_unique<std::uint8_t[]>(capacity);
  const pubsub::MessageFrame frame = pubsub::build_message_frame({p->storage.get(), capacity}, spec);
  if (!frame.ok()) {  // sized with message_frame_bytes_max: a programmer error
    delete p;
    return {500, error_json("internal", "could not frame the message")};
  }
  p->frame = frame.frame;
  p->published_ns = monotonic_ns();

  // All mailboxes or none: a publication that reached some workers only
  // would be delivered to some subscribers only.  Room only grows while the
  // producer locks are held (workers only pop), so checking first is exact.
  const auto& boxes = shared_.mailboxes;
  for (auto& box : boxes) box->producer_lock().lock();
  bool room = true;
  for (auto& box : boxes) room = room && box->free_slots() > 0;
  if (room) {
    p->refs.store(static_cast<std::uint32_t>(boxes.size()) + 1);
    p->pending.store(static_cast<std::uint32_t>(boxes.size()));
    for (auto& box : boxes) (void)box->push(p);
  }
  for (auto& box : boxes) box->producer_lock().unlock();
  if (!room) {
    delete p;
    bump(counters.refused[static_cast<std::size_t>(PublishRefusal::mailbox_full)]);
    return {503, error_json("mailbox_full",
                            "a worker's mailbox is full (mailbox_size): subscribers are not keeping up; retry")};
  }
  wake_all();

  const std::uint32_t late = p->wait_counted(count_wait_ms);
  const std::uint64_t recipients = p->recipients.load(std::memory_order_relaxed);
  bump(counters.publishes_total);
  if (to_user) bump(counters.user_sends_total);
  bump(counters.body_bytes_total, body.size());
  bump(counters.recipients_total, recipients);
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
