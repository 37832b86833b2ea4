// One WebSocket conversation, server side: wslay's event engine behind a
// byte-in / byte-out interface (no sockets).
//
// A Session is heavy (wslay's contexts are ~8.7 KiB), so the server keeps a
// pool of them and attaches one to a connection only while that connection is
// mid-message or has output queued.  quiescent() says when it may go back to
// the pool; reusable() says whether its wslay context is clean enough to serve
// another connection without being re-created.
//
// Inbound bytes pass FrameTracker (proto/ws_frame.h) before wslay sees them,
// so every protocol violation is answered with its RFC 6455 close code and a
// reason naming what was wrong.  The client's close frame reaches wslay in
// one piece, rebuilt from the tracker's validated copy (see feed()).
//
// Data messages never enter wslay's own queues, which malloc and copy every
// message (and again to flatten it): wslay runs without buffering for data
// frames and hands us their unmasked payload chunks, which we reassemble in
// pooled segments (proto/segments.h); outbound data frames are framed
// straight into the same kind of segment queue, where wslay's control frames
// (pongs, closes) land too, in order.  wslay still validates every frame,
// checks UTF-8, and answers pings and closes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <sys/uio.h>

#include "proto/segments.h"
#include "proto/ws_frame.h"

struct wslay_event_context;

namespace rg::proto::ws {

struct SessionLimits {
  std::uint64_t max_message_bytes = 1024 * 1024;
  std::uint64_t max_frame_bytes = 1024 * 1024;  // one data frame's payload
  // Output bytes handed out per send (next_output).
  std::uint32_t output_chunk_bytes = 256 * 1024;
};

class Session;

// What the application does with a complete data message.
class MessageHandler {
 public:
  virtual void on_message(Session& session, Opcode opcode, std::span<const std::uint8_t> payload) = 0;

 protected:
  ~MessageHandler() = default;
};

class Session {
 public:
  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // Creates the wslay context.  False only on allocation failure.
  // `pool`: where segments come from (it must outlive the session); null
  // gives the session a private one.  `scratch`: at least max_message_bytes,
  // where a message spanning several segments is made contiguous for the
  // handler; empty gives the session a private buffer, allocated on first
  // such message.  The server shares one pool and one scratch per worker.
  [[nodiscard]] bool init(const SessionLimits& limits, MessageHandler* handler, SegmentPool* pool = nullptr,
                          std::span<std::uint8_t> scratch = {}) noexcept;

  enum class FeedResult : std::uint8_t {
    ok,
    fatal,  // wslay failed internally (memory): drop the connection
  };
  // Processes inbound bytes.  Messages reach the handler before this returns.
  [[nodiscard]] FeedResult feed(std::span<const std::uint8_t> bytes) noexcept;

  // Queues a data message: framed and copied into segments.  False once a
  // close has been queued, or when memory is short.
  bool queue_message(Opcode opcode, std::span<const std::uint8_t> payload) noexcept;
  // Queues a close frame and stops reading.  reason <= 123 bytes.
  void queue_close(std::uint16_t code, std::string_view reason) noexcept;

  // Output: next_output() returns bytes that stay valid and unchanged until
  // output_sent(); the caller sends them and reports how many went out.
  // The span form is the head segment's bytes; the iovec form gathers
  // several segments (up to output_chunk_bytes) and returns the entries used.
  [[nodiscard]] std::span<const std::uint8_t> next_output() noexcept;
  [[nodiscard]] std::size_t next_output(std::span<iovec> iov) noexcept;
  void output_sent(std::size_t bytes) noexcept;
  [[nodiscard]] bool has_output() noexcept;

  [[nodiscard]] bool close_received() const noexcept;
  [[nodiscard]] bool close_sent() const noexcept;
  // True once no more input will be read (a close was queued or received).
  [[nodiscard]] bool read_closed() const noexcept;
  // Close code we sent (or queued), 0 if none.
  [[nodiscard]] std::uint16_t close_code() const noexcept { return close_code_; }

  // No partial frame, no fragmented message, nothing queued or staged, no
  // close in progress: the connection can drop this session.
  [[nodiscard]] bool quiescent() const noexcept;
  // Whether the wslay context may serve another connection as is.  Contexts
  // that saw a close or an error are re-created instead.
  [[nodiscard]] bool reusable() const noexcept { return !dirty_ && quiescent(); }
  // Prepares a reusable session for its next connection.
  void recycle() noexcept;

  // Framed output bytes in the segment queue (not counting control frames
  // wslay has yet to frame).
  [[nodiscard]] std::size_t staged_bytes() const noexcept { return static_cast<std::size_t>(out_.bytes()); }
  // Every outbound byte this session holds: wslay's queue plus framed output.
  // The server compares it with max_send_queue to stop reading from a peer
  // that does not read.
  [[nodiscard]] std::size_t queued_bytes() const noexcept;
  // Messages queued and not yet sent (a message counts until the segment
  // holding its last byte is sent), plus control frames wslay holds.
  [[nodiscard]] std::size_t queued_messages() const noexcept;
  // Bytes of the data message being reassembled (inbound, not yet whole).
  [[nodiscard]] std::uint64_t inbound_bytes() const noexcept { return in_msg_.bytes(); }
  // A message (or a frame header) has begun and not ended: the peer owes
  // the rest of it.
  [[nodiscard]] bool mid_message() const noexcept { return !tracker_.at_message_boundary() || !in_msg_.empty(); }
  // The message being received was refused for lack of room (the worker's
  // buffer budget, or memory): the session queued close 1013.  The refusal
  // comes at the end of the frame where room ran out (on_wslay_frame_end
  // says why), and not at all if that frame turns out bad (1007).
  [[nodiscard]] bool inbound_refused() const noexcept { return refused_; }

  // wslay callbacks (C linkage trampolines call these).
  long on_wslay_recv(std::uint8_t* buf, std::size_t len) noexcept;
  long on_wslay_send(const std::uint8_t* data, std::size_t len) noexcept;
  void on_wslay_message(std::uint8_t opcode) noexcept;
  void on_wslay_frame_start(std::uint8_t opcode) noexcept;
  void on_wslay_chunk(const std::uint8_t* data, std::size_t len) noexcept;
  void on_wslay_frame_end() noexcept;

 private:
  void pump() noexcept;
  void release_segments() noexcept;

  wslay_event_context* ctx_ = nullptr;
  MessageHandler* handler_ = nullptr;
  SessionLimits limits_{};
  FrameTracker tracker_;
  std::span<const std::uint8_t> in_;  // what on_wslay_recv serves from
  // Declared before the queues: a private pool outlives them.
  SegmentPool own_pool_;
  SegmentPool* pool_ = &own_pool_;
  std::span<std::uint8_t> scratch_;
  std::vector<std::uint8_t> own_scratch_;
  SegmentQueue out_;     // framed output, data and control, in wire order
  SegmentQueue in_msg_;  // the data message being reassembled
  bool in_data_frame_ = false;  // the frame wslay is reading is a data frame
  // A segment could not be had for the data message being received: the
  // rest of its frame is dropped, and the message refused at the frame's end.
  bool no_room_ = false;
  bool refused_ = false;  // that frame ended: 1013, queued in feed()
  bool send_in_flight_ = false;  // the head bytes are handed to the kernel
  bool dirty_ = false;
  std::uint16_t close_code_ = 0;
};

}  // namespace rg::proto::ws
