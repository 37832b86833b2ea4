// The delivery-source seam: how publications reach the workers, whoever
// makes them.
//
// A source (the publish API today, control/publisher.cpp; a backplane thread
// reading Redis next) frames each publication once with frame(), then
// post()s it: into every worker's bounded mailbox or into none, waking each
// worker with a completion on its own ring.  Workers drain their mailboxes
// every loop turn and do not know who filled them (server/pubsub.cpp).  A
// source never touches a worker's state and never blocks a worker: a full
// mailbox is a refusal it reports (the publish API answers 503).
//
// One DeliverySource per source thread: it owns a small io_uring for
// IORING_OP_MSG_RING (single issuer) and a body classifier.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proto/pubsub.h"
#include "ring/ring.h"
#include "server/fanout.h"
#include "server/worker.h"

namespace rg::server {

class DeliverySource {
 public:
  explicit DeliverySource(Shared& shared);
  DeliverySource(const DeliverySource&) = delete;
  DeliverySource& operator=(const DeliverySource&) = delete;

  // In the source's thread.  Falls back to the workers' eventfds when no
  // MSG_RING ring can be made.
  void start();

  // A publication of `body` to channel or user `name` (a valid name),
  // framed once for every recipient, with one reference (the caller's).
  // Null only when memory is short.
  [[nodiscard]] Publication* frame(Publication::Target target, std::string_view name, std::string id,
                                   std::span<const std::uint8_t> body);

  enum class Posted : std::uint8_t { posted, mailbox_full };
  // Into every worker's mailbox or none (a publication that reached some
  // workers only would reach some subscribers only).  On `posted` each
  // worker holds a reference and counts its recipients into `p`; the
  // caller's reference is still the caller's to drop.
  [[nodiscard]] Posted post(Publication* p);

 private:
  void wake_all();
  [[nodiscard]] bool raw_channel(std::string_view channel) const;

  Shared& shared_;
  proto::pubsub::BodyClassifier classifier_;
  ring::Ring ring_;
  bool msg_ring_ = false;
};

}  // namespace rg::server
