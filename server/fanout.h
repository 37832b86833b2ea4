// Crossing workers for pub/sub: a published message framed once and shared
// by reference count, and the bounded per-worker mailboxes it travels in.
//
// The publisher (the admin listener's thread) builds one Publication, posts
// a pointer to it into every worker's mailbox, and wakes each worker with a
// completion on the worker's own ring (IORING_OP_MSG_RING, or an eventfd
// read where the kernel lacks it).  Each worker counts its recipients, queues
// the frame to them by reference, and drops its reference when the last send
// of it completes.  Nothing is copied per recipient or per worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace rg::server {

// The tag op a publisher's wake-up carries on a worker's ring.
inline constexpr std::uint8_t mailbox_wake_op = 32;

struct Publication {
  enum class Target : std::uint8_t { channel, user };

  Target target = Target::channel;
  std::string name;  // the channel or the user (a valid name)
  std::string id;    // the message id, as delivered
  std::unique_ptr<std::uint8_t[]> storage;
  std::span<const std::uint8_t> frame;  // the whole server frame, inside storage
  std::uint64_t published_ns = 0;       // CLOCK_MONOTONIC, for the fan-out latency histogram

  // Holders: every worker it was posted to, plus the publisher until it has
  // answered.  The last one frees it.
  std::atomic<std::uint32_t> refs{1};
  // Workers that have not yet counted their recipients; the publisher waits
  // on this word (a futex) to answer with the total.
  std::atomic<std::uint32_t> pending{0};
  std::atomic<std::uint64_t> recipients{0};

  void unref() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  // A worker has counted `n` recipients.
  void counted(std::uint64_t n) noexcept;
  // Waits until every worker has counted, or `timeout_ms` passes.  Returns
  // the workers still pending (0 when all counted).
  std::uint32_t wait_counted(std::uint64_t timeout_ms) noexcept;
};

// A bounded single-consumer queue of publications: the owning worker pops;
// publishers push under a mutex (there is one publisher thread today, so it
// is never contended).  Capacity is fixed at start-up; a full mailbox is a
// refusal the publisher reports (503), never growth.
class Mailbox {
 public:
  void init(std::uint32_t capacity);
  [[nodiscard]] std::uint32_t capacity() const noexcept { return static_cast<std::uint32_t>(slots_.size()); }
  [[nodiscard]] std::uint32_t free_slots() const noexcept;
  // Producer side, with producer_lock() held.  False when full.
  bool push(Publication* p) noexcept;
  // Consumer side (the owning worker only).  nullptr when empty.
  Publication* pop() noexcept;
  [[nodiscard]] std::uint32_t depth() const noexcept;

  std::mutex& producer_lock() noexcept { return producer_; }

  // Set by a publisher that woke the worker, cleared by the worker before it
  // drains: one wake-up per batch of publications, not one per publication.
  std::atomic<bool> wake_pending{false};
  // Where a wake-up goes: the worker's ring (MSG_RING) or its eventfd.
  std::atomic<int> ring_fd{-1};
  int event_fd = -1;

 private:
  std::vector<Publication*> slots_;
  alignas(64) std::atomic<std::uint64_t> head_{0};  // next to pop (consumer writes)
  alignas(64) std::atomic<std::uint64_t> tail_{0};  // next to push (producer writes)
  std::mutex producer_;
};

}  // namespace rg::server
