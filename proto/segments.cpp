#include "proto/segments.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>

namespace rg::proto {

SegmentPool::~SegmentPool() {
  // Queues give their segments back before the pool goes (the worker
  // declares the pool before the sessions that use it).
  assert(live_ == 0);
  while (free_) {
    Segment* s = free_;
    free_ = s->next;
    std::free(s);
  }
}

void SegmentPool::init(std::uint32_t segment_size, std::uint32_t keep_free_max, std::uint64_t live_max) noexcept {
  assert(segment_size >= segment_size_min && segment_size <= segment_size_max);
  assert(live_ == 0 && free_count_ == 0);
  capacity_ = segment_size - static_cast<std::uint32_t>(sizeof(Segment));
  keep_free_max_ = keep_free_max;
  live_max_ = live_max;
}

Segment* SegmentPool::take(bool capped) noexcept {
  if (capped && live_capped_ >= live_max_) return nullptr;
  Segment* s = free_;
  if (s) {
    free_ = s->next;
    --free_count_;
  } else {
    s = static_cast<Segment*>(std::malloc(segment_size()));
    if (!s) return nullptr;
    ++allocations_total_;
  }
  *s = Segment{nullptr, 0, 0, 0, capped ? 1u : 0u};
  ++live_;
  live_capped_ += capped ? 1 : 0;
  return s;
}

void SegmentPool::give(Segment* s) noexcept {
  assert(live_ > 0);
  --live_;
  live_capped_ -= s->capped;
  if (free_count_ >= keep_free_max_) {
    std::free(s);
    return;
  }
  s->next = free_;
  free_ = s;
  ++free_count_;
}

bool SegmentQueue::append(SegmentPool& pool, std::span<const std::span<const std::uint8_t>> parts, bool message,
                          bool capped) noexcept {
  std::size_t total = 0;
  for (const auto& p : parts) total += p.size();
  if (total == 0) return true;  // nothing to hold (frames are never empty)
  const std::size_t cap = pool.capacity();
  // Take every segment the unit needs before writing any byte, so a short
  // pool leaves the queue as it was.
  const std::size_t room = tail_ ? cap - tail_->end : 0;
  Segment* fresh_head = nullptr;
  Segment* fresh_tail = nullptr;
  std::uint32_t fresh = 0;
  if (total > room) {  // always so without a tail (room 0)
    const std::size_t need = (total - room + cap - 1) / cap;
    for (std::size_t i = 0; i < need; ++i) {
      Segment* s = pool.take(capped);
      if (!s) {
        while (fresh_head) {
          Segment* n = fresh_head->next;
          pool.give(fresh_head);
          fresh_head = n;
        }
        return false;
      }
      if (fresh_tail) fresh_tail->next = s;
      else fresh_head = s;
      fresh_tail = s;
      ++fresh;
    }
  }
  if (!tail_) {
    head_ = fresh_head;
    tail_ = fresh_head;
    fresh_head = fresh_head->next;
  }
  Segment* at = tail_;
  at->next = fresh_head;
  for (const auto& p : parts) {
    std::size_t off = 0;
    while (off < p.size()) {
      if (at->end == cap) at = at->next;
      const std::size_t n = std::min(p.size() - off, cap - at->end);
      std::memcpy(at->bytes() + at->end, p.data() + off, n);
      at->end += static_cast<std::uint32_t>(n);
      off += n;
    }
  }
  // Segments taken for a unit are all filled (the count was exact), so the
  // last one written is the tail.
  while (at->next) at = at->next;
  tail_ = at;
  segments_ += fresh;
  bytes_ += total;
  if (message) {
    ++tail_->messages;
    ++messages_;
  }
  return true;
}

std::span<const std::uint8_t> SegmentQueue::front() const noexcept {
  if (!head_) return {};
  return {head_->bytes() + head_->begin, head_->end - head_->begin};
}

std::size_t SegmentQueue::gather(std::span<iovec> iov, std::size_t max_bytes) const noexcept {
  std::size_t used = 0;
  for (const Segment* s = head_; s && used < iov.size() && max_bytes > 0; s = s->next) {
    const std::size_t n = std::min<std::size_t>(s->end - s->begin, max_bytes);
    if (n == 0) continue;
    iov[used++] = iovec{const_cast<std::uint8_t*>(s->bytes() + s->begin), n};
    max_bytes -= n;
  }
  return used;
}

void SegmentQueue::consume(SegmentPool& pool, std::size_t n) noexcept {
  assert(n <= bytes_);
  bytes_ -= n;
  // Segments are never empty while queued (appends fill what they take, and
  // a drained one goes at once), so only consumed bytes can drain one.
  while (n > 0) {
    assert(head_);
    const std::size_t take = std::min<std::size_t>(n, head_->end - head_->begin);
    head_->begin += static_cast<std::uint32_t>(take);
    n -= take;
    if (head_->begin < head_->end) break;
    // Drained: its messages are out, and so is the segment.
    messages_ -= head_->messages;
    Segment* next = head_->next;
    pool.give(head_);
    --segments_;
    head_ = next;
    if (!head_) tail_ = nullptr;
  }
}

void SegmentQueue::clear(SegmentPool& pool) noexcept {
  while (head_) {
    Segment* next = head_->next;
    pool.give(head_);
    head_ = next;
  }
  tail_ = nullptr;
  bytes_ = 0;
  messages_ = 0;
  segments_ = 0;
}

void SegmentQueue::copy_to(std::uint8_t* out) const noexcept {
  for (const Segment* s = head_; s; s = s->next) {
    std::memcpy(out, s->bytes() + s->begin, s->end - s->begin);
    out += s->end - s->begin;
  }
}

}  // namespace rg::proto
