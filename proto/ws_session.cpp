#include "proto/ws_session.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <array>
#include <cassert>

namespace rg::proto::ws {

namespace {

// A session without the server's pool gets a private one of this shape.
constexpr std::uint32_t private_segment_size = 4096;
constexpr std::uint32_t private_segments_kept = 64;

ssize_t recv_trampoline(wslay_event_context_ptr, uint8_t* buf, size_t len, int, void* user) {
  return static_cast<Session*>(user)->on_wslay_recv(buf, len);
}
ssize_t send_trampoline(wslay_event_context_ptr, const uint8_t* data, size_t len, int, void* user) {
  return static_cast<Session*>(user)->on_wslay_send(data, len);
}
void msg_trampoline(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void* user) {
  static_cast<Session*>(user)->on_wslay_message(arg->opcode);
}
void frame_start_trampoline(wslay_event_context_ptr, const wslay_event_on_frame_recv_start_arg* arg, void* user) {
  static_cast<Session*>(user)->on_wslay_frame_start(arg->opcode);
}
void chunk_trampoline(wslay_event_context_ptr, const wslay_event_on_frame_recv_chunk_arg* arg, void* user) {
  static_cast<Session*>(user)->on_wslay_chunk(arg->data, arg->data_length);
}
void frame_end_trampoline(wslay_event_context_ptr, void* user) { static_cast<Session*>(user)->on_wslay_frame_end(); }

bool is_data(std::uint8_t opcode) {
  return opcode == static_cast<std::uint8_t>(Opcode::text) || opcode == static_cast<std::uint8_t>(Opcode::binary) ||
         opcode == static_cast<std::uint8_t>(Opcode::continuation);
}

}  // namespace

Session::~Session() {
  if (ctx_) wslay_event_context_free(ctx_);
  release_segments();
}

void Session::release_segments() noexcept {
  out_.clear(*pool_);
  in_msg_.clear(*pool_);
}

bool Session::init(const SessionLimits& limits, MessageHandler* handler, SegmentPool* pool,
                   std::span<std::uint8_t> scratch) noexcept {
  if (ctx_) {
    wslay_event_context_free(ctx_);
    ctx_ = nullptr;
  }
  release_segments();
  if (pool) {
    pool_ = pool;
  } else {
    pool_ = &own_pool_;
    if (own_pool_.live() == 0 && own_pool_.cached() == 0) own_pool_.init(private_segment_size, private_segments_kept);
  }
  scratch_ = scratch;
  limits_ = limits;
  handler_ = handler;
  tracker_ = FrameTracker(limits.max_message_bytes, limits.max_frame_bytes);
  const wslay_event_callbacks callbacks{
      .recv_callback = recv_trampoline,
      .send_callback = send_trampoline,
      .genmask_callback = nullptr,  // servers never mask
      .on_frame_recv_start_callback = frame_start_trampoline,
      .on_frame_recv_chunk_callback = chunk_trampoline,
      .on_frame_recv_end_callback = frame_end_trampoline,
      .on_msg_recv_callback = msg_trampoline,
  };
  if (wslay_event_context_server_init(&ctx_, &callbacks, this) != 0) {
    ctx_ = nullptr;
    return false;
  }
  // wslay mallocs a frame's whole declared length when the frame starts, so
  // the limit must be set; FrameTracker enforces the same one first.
  wslay_event_config_set_max_recv_msg_length(ctx_, limits.max_message_bytes);
  // Data frames come to us chunk by chunk (see the header); wslay buffers
  // only control frames.
  wslay_event_config_set_no_buffering(ctx_, 1);
  in_ = {};
  in_data_frame_ = false;
  no_room_ = false;
  refused_ = false;
  send_in_flight_ = false;
  dirty_ = false;
  close_code_ = 0;
  return true;
}

Session::FeedResult Session::feed(std::span<const std::uint8_t> bytes) noexcept {
  assert(ctx_);
  if (read_closed()) return FeedResult::ok;  // after a close only our close reply matters
  const FrameTracker::Verdict verdict = tracker_.feed(bytes);
  std::size_t n = verdict.ok ? bytes.size() : verdict.valid_prefix;
  // wslay checks a close reason's UTF-8 chunk by chunk but skips the first
  // two bytes of every chunk, not only of the payload, so a valid close frame
  // that reaches it in pieces (split reads, or its 4 KiB input buffer
  // wrapping) may be failed with 1007.  It never sees the client's close
  // frame as sent: the tracker validates and unmasks it, and once complete it
  // is handed over below in one piece.
  if (tracker_.close_started()) n = std::min(n, tracker_.close_offset());
  in_ = bytes.first(n);
  int rc = in_.empty() ? 0 : wslay_event_recv(ctx_);
  if (rc == 0 && verdict.ok && tracker_.close_complete() && wslay_event_get_read_enabled(ctx_)) {
    // Masked with a zero key: the payload goes through unchanged.
    const std::span<const std::uint8_t> payload = tracker_.close_payload();
    std::array<std::uint8_t, 6 + control_payload_max> frame{0x88, static_cast<std::uint8_t>(0x80 | payload.size())};
    std::copy(payload.begin(), payload.end(), frame.begin() + 6);
    in_ = {frame.data(), 6 + payload.size()};
    rc = wslay_event_recv(ctx_);
  }
  in_ = {};
  if (refused_) {
    // The message being received could not be held: the worker's buffer
    // budget (the pool's live_max) is spent, or memory is short.  wslay
    // found nothing wrong with the frame where room ran out (see
    // on_wslay_frame_end), so the close is ours to send.
    dirty_ = true;
    queue_close(1013, "no room for this message within the server's buffer budget: try again later");
    return FeedResult::ok;
  }
  if (rc != 0) {
    dirty_ = true;
    // wslay queues a close of its own before failing; without one there is
    // nothing left to say to the peer.
    if (!wslay_event_want_write(ctx_)) return FeedResult::fatal;
  }
  if (!read_closed() && close_code_ == 0 && !wslay_event_get_read_enabled(ctx_)) dirty_ = true;
  if (!verdict.ok) queue_close(verdict.close_code, verdict.reason);
  if (!wslay_event_get_read_enabled(ctx_)) dirty_ = true;
  pump();
  return FeedResult::ok;
}

bool Session::queue_message(Opcode opcode, std::span<const std::uint8_t> payload) noexcept {
  // Control frames wslay holds go first, so the wire order is the order of
  // the calls; and nothing follows a close.
  pump();
  if (close_code_ != 0 || close_sent() || wslay_event_want_write(ctx_) || !wslay_event_get_write_enabled(ctx_))
    return false;
  std::array<std::uint8_t, header_size_max> header{};
  const std::size_t header_len = encode_header(header, opcode, true, payload.size(), nullptr);
  const std::span<const std::uint8_t> parts[2] = {{header.data(), header_len}, payload};
  return out_.append(*pool_, parts, true);
}

void Session::queue_close(std::uint16_t code, std::string_view reason) noexcept {
  dirty_ = true;
  reason = reason.substr(0, 123);
  const int rc = wslay_event_queue_close(ctx_, code, reinterpret_cast<const std::uint8_t*>(reason.data()),
                                         reason.size());
  if (rc == 0 && close_code_ == 0) close_code_ = code;
  // After a violation the rest of the input cannot be trusted, and after a
  // close we have nothing more to deliver: stop reading either way.  (The
  // server keeps draining the socket so the peer sees our close, not a RST.)
  if (code != 1001 && code != 1000) wslay_event_shutdown_read(ctx_);
  pump();
}

// Moves wslay's control frames into the segment queue.  Appending is safe
// while a send is in flight: segments never move.
void Session::pump() noexcept {
  while (wslay_event_want_write(ctx_)) {
    const std::uint64_t before = out_.bytes();
    if (wslay_event_send(ctx_) != 0) {
      dirty_ = true;
      break;
    }
    if (out_.bytes() == before) break;  // memory short: it stays in wslay's queue
  }
}

std::span<const std::uint8_t> Session::next_output() noexcept {
  pump();
  const std::span<const std::uint8_t> head = out_.front();
  if (head.empty()) return {};
  send_in_flight_ = true;
  return head.first(std::min<std::size_t>(head.size(), limits_.output_chunk_bytes));
}

std::size_t Session::next_output(std::span<iovec> iov) noexcept {
  pump();
  const std::size_t n = out_.gather(iov, limits_.output_chunk_bytes);
  if (n > 0) send_in_flight_ = true;
  return n;
}

void Session::output_sent(std::size_t bytes) noexcept {
  assert(send_in_flight_ && bytes <= out_.bytes());
  send_in_flight_ = false;
  out_.consume(*pool_, bytes);
}

bool Session::has_output() noexcept {
  pump();
  return !out_.empty();
}

std::size_t Session::queued_bytes() const noexcept {
  return static_cast<std::size_t>(wslay_event_get_queued_msg_length(ctx_)) + staged_bytes();
}

std::size_t Session::queued_messages() const noexcept {
  return static_cast<std::size_t>(wslay_event_get_queued_msg_count(ctx_)) + out_.messages();
}

bool Session::close_received() const noexcept { return wslay_event_get_close_received(ctx_) != 0; }
bool Session::close_sent() const noexcept { return wslay_event_get_close_sent(ctx_) != 0; }
bool Session::read_closed() const noexcept { return wslay_event_get_read_enabled(ctx_) == 0; }

bool Session::quiescent() const noexcept {
  return tracker_.at_message_boundary() && !send_in_flight_ && out_.empty() && in_msg_.empty() &&
         !wslay_event_want_write(ctx_) && close_code_ == 0 && !close_received() && !read_closed();
}

void Session::recycle() noexcept {
  // Callers only recycle reusable sessions: the wslay context sits between
  // messages with an empty input buffer (every byte fed belonged to complete
  // frames, and wslay consumes complete frames eagerly), nothing queued, no
  // close seen.  In that state it behaves exactly like a fresh context.
  assert(reusable());
  tracker_.reset();
  release_segments();  // empty already; segments live in the pool, not here
  in_data_frame_ = false;
}

long Session::on_wslay_recv(std::uint8_t* buf, std::size_t len) noexcept {
  if (in_.empty()) {
    wslay_event_set_error(ctx_, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  const std::size_t n = std::min(len, in_.size());
  std::copy_n(in_.data(), n, buf);
  in_ = in_.subspan(n);
  return static_cast<long>(n);
}

long Session::on_wslay_send(const std::uint8_t* data, std::size_t len) noexcept {
  // Control frames only (data never goes through wslay): past the cap.
  if (!out_.append(*pool_, {data, len}, false)) {
    wslay_event_set_error(ctx_, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  return static_cast<long>(len);
}

void Session::on_wslay_frame_start(std::uint8_t opcode) noexcept { in_data_frame_ = is_data(opcode); }

void Session::on_wslay_chunk(const std::uint8_t* data, std::size_t len) noexcept {
  if (!in_data_frame_ || len == 0 || no_room_) return;
  // Capped: reassembly counts against the pool's live_max (the worker's
  // share of max_buffered_bytes) like outbound data, so a flood of
  // half-sent messages is refused (1013) instead of holding memory.
  if (!in_msg_.append(*pool_, {data, len}, true)) {
    // Not refused yet: see on_wslay_frame_end.  What the message held goes
    // back at once; the rest of the frame is read and dropped.
    no_room_ = true;
    in_msg_.clear(*pool_);
  }
}

// The refusal of a message that found no room waits for the end of the
// frame where room ran out, so that the same bytes get the same answer
// however they were split across reads.  wslay checks a text chunk's UTF-8
// before handing the chunk to on_wslay_chunk, and fails the frame (1007)
// without handing it over; its chunks follow our reads and its 4 KiB input
// buffer.  Refused at once, a frame whose bad byte lies past the point where
// room ran out would get 1007 when that byte came in the same chunk, and
// 1013 when it came in a later read.  At the frame's end wslay has judged
// every byte of it, a truncated last code point included: a bad frame gets
// 1007 whatever the reads, and 1013 ("nothing is wrong with it, try again
// later") goes only to a frame with nothing wrong with it.  Waiting holds no
// memory (the rest of the frame is dropped) and reads at most the rest of
// one frame (max_frame_bytes), bytes the server would drain after its close
// anyway.
void Session::on_wslay_frame_end() noexcept {
  if (!no_room_ || refused_) return;
  refused_ = true;
  wslay_event_shutdown_read(ctx_);  // feed() queues the 1013
}

void Session::on_wslay_message(std::uint8_t opcode) noexcept {
  if (no_room_) return;  // part of it was never held: it is refused (1013) in feed()
  if (opcode == static_cast<std::uint8_t>(Opcode::text) || opcode == static_cast<std::uint8_t>(Opcode::binary)) {
    std::span<const std::uint8_t> payload;
    if (in_msg_.contiguous()) {
      payload = in_msg_.front();
    } else {
      // Spans several segments: the handler gets it contiguous, from the
      // worker's scratch (one copy, no allocation).
      const auto n = static_cast<std::size_t>(in_msg_.bytes());
      if (scratch_.size() < n) {
        own_scratch_.resize(std::max<std::size_t>(n, limits_.max_message_bytes));
        scratch_ = own_scratch_;
      }
      in_msg_.copy_to(scratch_.data());
      payload = scratch_.first(n);
      // Its segments go back before the handler runs: an echo of it must
      // not be charged for the message twice (inbound and outbound).
      in_msg_.clear(*pool_);
    }
    if (handler_) handler_->on_message(*this, static_cast<Opcode>(opcode), payload);
    in_msg_.clear(*pool_);
  } else if (opcode == static_cast<std::uint8_t>(Opcode::close)) {
    dirty_ = true;
  }
}

}  // namespace rg::proto::ws
