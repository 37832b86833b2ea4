// Pooled byte segments: what a WebSocket session queues its outbound frames
// and reassembles its inbound messages in, so that the data path makes no
// heap allocation per message.
//
// A segment is one fixed-size block (segment_size bytes, its header
// included) taken from a per-worker SegmentPool.  A SegmentQueue is a FIFO
// of segments: bytes are appended at the tail and consumed at the head.
// Segments never move, so bytes handed to the kernel stay valid while more
// are appended behind them, and a drained segment goes straight back to the
// pool (an idle connection owns none).
//
// The pool allocates a segment only when its free list is empty and keeps
// up to keep_free_max freed ones for reuse; beyond that it returns them to
// the allocator, so a burst of slow readers does not pin its peak memory.
// At most live_max segments are out for capped use (the server's outbound
// data and inbound reassembly) at once; uncapped takes (control frames,
// which are all a refused connection still needs) are counted but not
// refused.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace rg::proto {

struct Segment {
  Segment* next;
  std::uint32_t begin;     // first byte not yet consumed
  std::uint32_t end;       // one past the last byte written
  std::uint32_t messages;  // messages whose last byte is in this segment
  std::uint32_t capped;  // taken against live_max
  [[nodiscard]] std::uint8_t* bytes() noexcept { return reinterpret_cast<std::uint8_t*>(this + 1); }
  [[nodiscard]] const std::uint8_t* bytes() const noexcept { return reinterpret_cast<const std::uint8_t*>(this + 1); }
};
static_assert(sizeof(Segment) == 24);

class SegmentPool {
 public:
  static constexpr std::uint32_t segment_size_min = 1024;
  static constexpr std::uint32_t segment_size_max = 1024 * 1024;

  SegmentPool() = default;
  SegmentPool(const SegmentPool&) = delete;
  SegmentPool& operator=(const SegmentPool&) = delete;
  ~SegmentPool();

  // segment_size: bytes per block, header included (segment_size_min..max).
  void init(std::uint32_t segment_size, std::uint32_t keep_free_max,
            std::uint64_t live_max = UINT64_MAX) noexcept;

  // A reset segment, or nullptr when memory is short (or, `capped`, when
  // live_max are out).
  [[nodiscard]] Segment* take(bool capped = true) noexcept;
  void give(Segment* s) noexcept;

  [[nodiscard]] std::uint32_t capacity() const noexcept { return capacity_; }  // payload bytes per segment
  [[nodiscard]] std::uint32_t segment_size() const noexcept { return capacity_ + sizeof(Segment); }
  [[nodiscard]] std::uint64_t live() const noexcept { return live_; }          // held by queues
  [[nodiscard]] std::uint64_t live_capped() const noexcept { return live_capped_; }  // of which against live_max
  [[nodiscard]] std::uint64_t cached() const noexcept { return free_count_; }  // on the free list
  // Memory the pool holds from the allocator (live + cached).
  [[nodiscard]] std::uint64_t memory_bytes() const noexcept {
    return (live_ + free_count_) * std::uint64_t{segment_size()};
  }
  [[nodiscard]] std::uint64_t allocations_total() const noexcept { return allocations_total_; }
  [[nodiscard]] std::uint64_t live_max() const noexcept { return live_max_; }

 private:
  Segment* free_ = nullptr;
  std::uint32_t capacity_ = 4096 - sizeof(Segment);
  std::uint32_t keep_free_max_ = 0;
  std::uint64_t live_max_ = UINT64_MAX;
  std::uint64_t free_count_ = 0;
  std::uint64_t live_ = 0;
  std::uint64_t live_capped_ = 0;
  std::uint64_t allocations_total_ = 0;
};

class SegmentQueue {
 public:
  SegmentQueue() = default;
  SegmentQueue(const SegmentQueue&) = delete;
  SegmentQueue& operator=(const SegmentQueue&) = delete;

  // Appends `parts` in order, as one unit: all of them or (memory short)
  // none.  With `message`, the unit counts as one message, pending until
  // the segment holding its last byte is consumed.  `capped`: new segments
  // count against the pool's live_max.
  [[nodiscard]] bool append(SegmentPool& pool, std::span<const std::span<const std::uint8_t>> parts, bool message,
                            bool capped = true) noexcept;
  [[nodiscard]] bool append(SegmentPool& pool, std::span<const std::uint8_t> bytes, bool capped = true) noexcept {
    const std::span<const std::uint8_t> parts[1] = {bytes};
    return append(pool, parts, false, capped);
  }

  // The head segment's unconsumed bytes (empty when the queue is).
  [[nodiscard]] std::span<const std::uint8_t> front() const noexcept;
  // Fills `iov` from the head: at most iov.size() entries and max_bytes
  // bytes.  Returns the entries used.
  std::size_t gather(std::span<iovec> iov, std::size_t max_bytes) const noexcept;
  // Drops n bytes from the head, giving drained segments back.
  void consume(SegmentPool& pool, std::size_t n) noexcept;
  void clear(SegmentPool& pool) noexcept;

  // Copies every byte, in order, to `out` (at least bytes() long).
  void copy_to(std::uint8_t* out) const noexcept;

  [[nodiscard]] bool empty() const noexcept { return bytes_ == 0; }
  [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }
  [[nodiscard]] std::uint32_t messages() const noexcept { return messages_; }
  [[nodiscard]] std::uint32_t segments() const noexcept { return segments_; }
  // One segment holds every byte.
  [[nodiscard]] bool contiguous() const noexcept { return head_ == tail_; }

 private:
  Segment* head_ = nullptr;
  Segment* tail_ = nullptr;
  std::uint64_t bytes_ = 0;
  std::uint32_t messages_ = 0;
  std::uint32_t segments_ = 0;
};

}  // namespace rg::proto
