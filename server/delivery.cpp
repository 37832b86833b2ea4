// The delivery-source seam (delivery.h): framing a publication once, and
// posting it to every worker's mailbox with one wake-up each.
#include "server/delivery.h"

#include <unistd.h>

#include <array>
#include <cstring>
#include <memory>
#include <new>

#include "base/clock.h"
#include "base/log.h"

namespace rg::server {

namespace pubsub = rg::proto::pubsub;

DeliverySource::DeliverySource(Shared& shared) : shared_(shared), classifier_(shared.config.max_publish_size) {}

void DeliverySource::start() {
  if (!shared_.wake_msg_ring) return;
  ring::RingParams params;
  params.sq_entries = 64;
  params.cq_entries = 256;
  std::string error;
  if (ring_.init(params, error) == 0 && ring_.supports(IORING_OP_MSG_RING)) {
    msg_ring_ = true;
    return;
  }
  RG_LOG(warn, "delivery source: no IORING_OP_MSG_RING ring (%s): waking workers through their eventfds", error);
}

bool DeliverySource::raw_channel(std::string_view channel) const {
  for (const std::string& p : shared_.config.raw_channels)
    if (pubsub::pattern_matches(p, channel)) return true;
  return false;
}

Publication* DeliverySource::frame(Publication::Target target, std::string_view name, std::string id,
                                   std::span<const std::uint8_t> body) {
  auto* p = new (std::nothrow) Publication;
  if (!p) return nullptr;
  const bool to_user = target == Publication::Target::user;
  p->target = target;
  p->name = std::string(name);
  p->id = std::move(id);
  pubsub::MessageSpec spec;
  spec.channel = to_user ? std::string_view{} : std::string_view(p->name);
  spec.user = to_user ? std::string_view(p->name) : std::string_view{};
  spec.id = p->id;
  spec.body = body;
  spec.kind = classifier_.classify(body);
  spec.envelope = !to_user && raw_channel(name) ? pubsub::Envelope::raw : pubsub::Envelope::json;
  const std::size_t capacity = pubsub::message_frame_bytes_max(body.size());
  p->storage.reset(new (std::nothrow) std::uint8_t[capacity]);
  const pubsub::MessageFrame frame =
      p->storage ? pubsub::build_message_frame({p->storage.get(), capacity}, spec) : pubsub::MessageFrame{};
  if (!frame.ok()) {  // out of memory; a frame sized with message_frame_bytes_max always fits
    delete p;
    return nullptr;
  }
  p->frame = frame.frame;
  p->published_ns = base::monotonic_ns();
  return p;
}

DeliverySource::Posted DeliverySource::post(Publication* p) {
  // Room only grows while the producer locks are held (workers only pop),
  // so checking every mailbox first is exact.
  const auto& boxes = shared_.mailboxes;
  for (const auto& box : boxes) box->producer_lock().lock();
  bool room = true;
  for (const auto& box : boxes) room = room && box->free_slots() > 0;
  if (room) {
    p->refs.fetch_add(static_cast<std::uint32_t>(boxes.size()));
    p->pending.store(static_cast<std::uint32_t>(boxes.size()));
    for (const auto& box : boxes) (void)box->push(p);  // room was checked under the lock
  }
  for (const auto& box : boxes) box->producer_lock().unlock();
  if (!room) return Posted::mailbox_full;
  wake_all();
  return Posted::posted;
}

// Wakes every worker that has no wake-up pending.
void DeliverySource::wake_all() {
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
  // A failed submit is covered by the workers' tick (100 ms at worst).
  if (const int err = ring_.submit(); err != 0)
    RG_LOG(warn, "delivery source: submitting MSG_RING wake-ups: %s", std::strerror(err));
  // Only failures post a CQE here (skip_success); reap them so the CQ
  // never fills.  A failed wake-up is covered by the worker's tick.
  std::array<ring::Completion, 16> cqes;
  ring_.drain(cqes, 1, [](const ring::Completion& c) {
    RG_LOG(warn, "delivery source: waking a worker with MSG_RING failed: %s", std::strerror(c.error()));
  });
}

}  // namespace rg::server
