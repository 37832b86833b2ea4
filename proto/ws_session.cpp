#include "proto/ws_session.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <array>
#include <cassert>

namespace rg::proto::ws {

namespace {

// Staged-output capacity a pooled session may keep between connections.
// Anything larger is handed back to the allocator so that a pool of idle
// sessions never pins large buffers.
constexpr std::size_t retained_output_capacity_max = 16 * 1024;

ssize_t recv_trampoline(wslay_event_context_ptr, uint8_t* buf, size_t len, int, void* user) {
  return static_cast<Session*>(user)->on_wslay_recv(buf, len);
}
ssize_t send_trampoline(wslay_event_context_ptr, const uint8_t* data, size_t len, int, void* user) {
  return static_cast<Session*>(user)->on_wslay_send(data, len);
}
void msg_trampoline(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void* user) {
  static_cast<Session*>(user)->on_wslay_message(arg->opcode, arg->msg, arg->msg_length);
}

}  // namespace

Session::~Session() {
  if (ctx_) wslay_event_context_free(ctx_);
}

bool Session::init(const SessionLimits& limits, MessageHandler* handler) noexcept {
  if (ctx_) {
    wslay_event_context_free(ctx_);
    ctx_ = nullptr;
  }
  limits_ = limits;
  handler_ = handler;
  tracker_ = FrameTracker(limits.max_message_bytes, limits.max_frame_bytes);
  const wslay_event_callbacks callbacks{
      .recv_callback = recv_trampoline,
      .send_callback = send_trampoline,
      .genmask_callback = nullptr,  // servers never mask
      .on_frame_recv_start_callback = nullptr,
      .on_frame_recv_chunk_callback = nullptr,
      .on_frame_recv_end_callback = nullptr,
      .on_msg_recv_callback = msg_trampoline,
  };
  if (wslay_event_context_server_init(&ctx_, &callbacks, this) != 0) {
    ctx_ = nullptr;
    return false;
  }
  // wslay mallocs a frame's whole declared length when the frame starts, so
  // the limit must be set; FrameTracker enforces the same one first.
  wslay_event_config_set_max_recv_msg_length(ctx_, limits.max_message_bytes);
  in_ = {};
  out_.clear();
  out_sent_ = 0;
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
  const wslay_event_msg msg{static_cast<std::uint8_t>(opcode), payload.data(), payload.size()};
  const int rc = wslay_event_queue_msg(ctx_, &msg);
  if (rc != 0) return false;
  pump();
  return true;
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

void Session::pump() noexcept {
  if (send_in_flight_) return;
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  }
  // wslay stops after a partial payload write; call again until it has
  // nothing left or our staging buffer is full.
  while (wslay_event_want_write(ctx_) && out_.size() < limits_.output_chunk_bytes) {
    const std::size_t before = out_.size();
    if (wslay_event_send(ctx_) != 0) {
      dirty_ = true;
      break;
    }
    if (out_.size() == before) break;
  }
}

std::span<const std::uint8_t> Session::next_output() noexcept {
  pump();
  if (out_sent_ == out_.size()) return {};
  send_in_flight_ = true;
  return {out_.data() + out_sent_, out_.size() - out_sent_};
}

void Session::output_sent(std::size_t bytes) noexcept {
  assert(send_in_flight_ && out_sent_ + bytes <= out_.size());
  send_in_flight_ = false;
  out_sent_ += bytes;
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  }
}

bool Session::has_output() noexcept {
  pump();
  return out_sent_ != out_.size();
}

std::size_t Session::queued_bytes() const noexcept {
  return static_cast<std::size_t>(wslay_event_get_queued_msg_length(ctx_)) + staged_bytes();
}

std::size_t Session::queued_messages() const noexcept {
  return static_cast<std::size_t>(wslay_event_get_queued_msg_count(ctx_));
}

bool Session::close_received() const noexcept { return wslay_event_get_close_received(ctx_) != 0; }
bool Session::close_sent() const noexcept { return wslay_event_get_close_sent(ctx_) != 0; }
bool Session::read_closed() const noexcept { return wslay_event_get_read_enabled(ctx_) == 0; }

bool Session::quiescent() const noexcept {
  return tracker_.at_message_boundary() && !send_in_flight_ && out_sent_ == out_.size() &&
         !wslay_event_want_write(ctx_) && close_code_ == 0 && !close_received() && !read_closed();
}

void Session::recycle() noexcept {
  // Callers only recycle reusable sessions: the wslay context sits between
  // messages with an empty input buffer (every byte fed belonged to complete
  // frames, and wslay consumes complete frames eagerly), nothing queued, no
  // close seen.  In that state it behaves exactly like a fresh context.
  assert(reusable());
  tracker_.reset();
  out_.clear();
  out_sent_ = 0;
  if (out_.capacity() > retained_output_capacity_max) std::vector<std::uint8_t>().swap(out_);
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
  const std::size_t room = limits_.output_chunk_bytes > out_.size() ? limits_.output_chunk_bytes - out_.size() : 0;
  if (send_in_flight_ || room == 0) {
    wslay_event_set_error(ctx_, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  const std::size_t n = std::min(len, room);
  out_.insert(out_.end(), data, data + n);
  return static_cast<long>(n);
}

void Session::on_wslay_message(std::uint8_t opcode, const std::uint8_t* msg, std::size_t len) noexcept {
  if (opcode == static_cast<std::uint8_t>(Opcode::text) || opcode == static_cast<std::uint8_t>(Opcode::binary)) {
    if (handler_) handler_->on_message(*this, static_cast<Opcode>(opcode), {msg, len});
  } else if (opcode == static_cast<std::uint8_t>(Opcode::close)) {
    dirty_ = true;
  }
}

}  // namespace rg::proto::ws
