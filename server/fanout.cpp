// Publications and mailboxes (server/fanout.h): reference counts, the recipient count wait, the SPSC ring.
#include "server/fanout.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <ctime>
#include <cerrno>

#include "base/clock.h"

namespace rg::server {

namespace {

// std::atomic::wait has no timeout; the futex it is built on does.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::uint64_t timeout_ns) {
  const timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<std::uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "futex words are 32 bits");

}  // namespace

void Publication::counted(std::uint64_t n) noexcept {
  recipients.fetch_add(n, std::memory_order_relaxed);
  if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) futex_wake_all(pending);
}

std::uint32_t Publication::wait_counted(std::uint64_t timeout_ms) noexcept {
  const std::uint64_t deadline = base::monotonic_ns() + timeout_ms * 1'000'000;
  for (;;) {
    const std::uint32_t left = pending.load(std::memory_order_acquire);
    if (left == 0) return 0;
    const std::uint64_t now = base::monotonic_ns();
    if (now >= deadline) return left;
    futex_wait(pending, left, deadline - now);
  }
}

void Mailbox::init(std::uint32_t capacity) {
  slots_.assign(std::bit_ceil(std::max<std::uint32_t>(capacity, 1)), nullptr);
}

std::uint32_t Mailbox::free_slots() const noexcept {
  return capacity() - depth();
}

std::uint32_t Mailbox::depth() const noexcept {
  return static_cast<std::uint32_t>(tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_acquire));
}

bool Mailbox::push(Publication* p) noexcept {
  const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
  if (tail - head_.load(std::memory_order_acquire) >= slots_.size()) return false;
  slots_[tail & (slots_.size() - 1)] = p;
  tail_.store(tail + 1, std::memory_order_release);
  return true;
}

Publication* Mailbox::pop() noexcept {
  const std::uint64_t head = head_.load(std::memory_order_relaxed);
  if (head == tail_.load(std::memory_order_acquire)) return nullptr;
  Publication* p = slots_[head & (slots_.size() - 1)];
  head_.store(head + 1, std::memory_order_release);
  return p;
}

}  // namespace rg::server
