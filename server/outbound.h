// Outbound: every byte a worker holds for its connections, in one account.
//
// A connection's outbound bytes live in three places: its wslay session's
// segments (echo output, pongs, closes), its pub/sub delivery queue (frames
// shared by reference) and its answer slot (an HTTP answer or a constant).
// Inbound, it holds the message being reassembled.  The worker adds these up
// for a connection and hands them to settle(); this class keeps the
// connection's Book and the worker's totals in step in O(1) (inbound and
// outbound alike count against max_buffered_bytes, which admission and
// /status read), decides when backpressure starts and ends (on outbound
// bytes only: a large inbound message is not a slow reader), and is the one
// place the slow-consumer policy is written: admit() says whether a new
// message may be queued, dropped, or must close the connection.
//
// It does no I/O.  The worker acts on what it returns (pausing reads,
// arming backpressure_timeout, queueing the close frame), which keeps this
// class a table-testable function of bytes, thresholds and policy.
#pragma once

#include <cstdint>

#include "config/config.h"
#include "server/counters.h"

namespace rg::server {

// One connection's outbound account.  Zero bytes are a fresh Book{}.
struct Book {
  std::uint64_t bytes = 0;          // outbound, as last settled into the worker's totals
  std::uint64_t inbound_bytes = 0;  // the message being reassembled, likewise
  std::uint32_t messages = 0;
  // Mid-message progress: bytes received since the stall timer was last
  // pushed back (see Worker::note_inbound_progress).
  std::uint32_t window_bytes = 0;
  bool mid_message = false;
  std::uint32_t backpressure_since_ms = 0;  // worker-relative
  bool backpressured = false;
  bool slow_close_sent = false;  // the slow-consumer close was queued: later messages are dropped
};

class Outbound {
 public:
  // `budget_bytes`: this worker's share of max_buffered_bytes.
  void init(const Config& config, std::uint64_t budget_bytes, WorkerCounters& counters) noexcept;

  enum class Verdict : std::uint8_t {
    queue,  // go ahead
    drop,   // slow_consumer_policy = drop, or the close is already on its way
    close,  // slow_consumer_policy = close: queue the close frame (code below), once
  };
  // Whether a new message of `bytes` may join `b`'s queue.  `held_bytes` is
  // what the worker holds now (see held()).  A backpressured connection, or
  // one whose message would take the worker over its budget, gets the
  // policy; every refusal is counted.
  [[nodiscard]] Verdict admit(Book& b, std::uint64_t bytes, std::uint64_t held_bytes) noexcept;

  enum class Change : std::uint8_t { none, backpressure_on, backpressure_off };
  // `b` now holds `bytes` outbound in `messages`, and `inbound_bytes` of a
  // message being reassembled: the totals move by the difference.
  // Backpressure starts above frame_buffer_size outbound on an open
  // connection and ends at buffer_drain_threshold of it.
  [[nodiscard]] Change settle(Book& b, std::uint64_t bytes, std::uint32_t messages, bool open, std::uint32_t now_ms,
                              std::uint64_t inbound_bytes = 0) noexcept;
  // The connection's account closes: its bytes leave the totals and a
  // backpressure episode, if any, ends (and is timed).
  void forget(Book& b, std::uint32_t now_ms) noexcept;
  // After backpressure_timeout: still over the threshold is a slow consumer.
  [[nodiscard]] bool still_over(const Book& b) const noexcept { return b.bytes > on_bytes_; }
  // Backpressure ends early (the connection drained part of the way).
  void end_backpressure(Book& b, std::uint32_t now_ms) noexcept;

  // What the worker holds against its budget: the bytes queued, or the
  // segment memory holding them when that is more (many connections with a
  // short message each).
  [[nodiscard]] std::uint64_t held(std::uint64_t segment_bytes) const noexcept {
    return segment_bytes > buffered_bytes_ ? segment_bytes : buffered_bytes_;
  }
  [[nodiscard]] std::uint64_t buffered_bytes() const noexcept { return buffered_bytes_; }
  [[nodiscard]] std::uint64_t inbound_bytes() const noexcept { return inbound_bytes_; }
  [[nodiscard]] std::uint64_t budget_bytes() const noexcept { return budget_bytes_; }
  [[nodiscard]] std::uint16_t slow_close_code() const noexcept { return slow_close_code_; }

 private:
  WorkerCounters* counters_ = nullptr;
  std::uint64_t budget_bytes_ = 0;
  std::uint64_t on_bytes_ = 0;   // frame_buffer_size
  std::uint64_t off_bytes_ = 0;  // buffer_drain_threshold of it
  bool drop_ = false;            // slow_consumer_policy = drop
  std::uint16_t slow_close_code_ = 1008;
  std::uint64_t buffered_bytes_ = 0;  // outbound + inbound
  std::uint64_t inbound_bytes_ = 0;   // of which inbound
  std::uint64_t messages_pending_ = 0;
  std::uint64_t high_water_bytes_ = 0;
  std::uint64_t backpressured_ = 0;
};

}  // namespace rg::server
