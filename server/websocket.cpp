// The upgraded connection: WebSocket bytes in (the few reads answered
// without a session, then the wslay session attached from the pool while a
// message is in flight), complete messages routed by endpoint, the echo
// endpoint itself, and the close handshake.
#include <cstring>

#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

// A complete message, to its connection's endpoint.
void Worker::on_message(ws::Session& session, ws::Opcode opcode, std::span<const std::uint8_t> payload) {
  counters_.messages_in_total.add();
  RG_ASSERT(feeding_slot_ != nil && conns_[feeding_slot_].session != nil);
  switch (conns_[feeding_slot_].endpoint) {
    case Endpoint::echo: on_echo_message(feeding_slot_, session, opcode, payload); break;
    case Endpoint::pubsub: on_command(feeding_slot_, opcode, payload); break;
    case Endpoint::none: RG_ASSERT(false && "a message before the upgrade"); break;
  }
}

// The echo endpoint: the message goes back as it came, unless the
// connection or the worker is over its buffer budget (Outbound's policy).
void Worker::on_echo_message(std::uint32_t slot, ws::Session& session, ws::Opcode opcode,
                             std::span<const std::uint8_t> payload) {
  // ws framing adds at most 10 bytes (server frames are unmasked).  The
  // message itself is still charged to this connection as inbound until the
  // read is accounted: it is leaving, so it does not count against its echo.
  Book& book = books_[conns_[slot].session];
  const std::uint64_t held = held_bytes();
  const std::uint64_t held_by_others = held > book.inbound_bytes ? held - book.inbound_bytes : 0;
  switch (outbound_.admit(book, payload.size() + 10, held_by_others)) {
    case Outbound::Verdict::queue:
      session.queue_message(opcode, payload);
      account(slot);  // may start backpressure before the next message in this read
      break;
    case Outbound::Verdict::close:
      session.queue_close(outbound_.slow_close_code(), "slow consumer");
      break;
    case Outbound::Verdict::drop: break;
  }
}

void Worker::handle_ws_bytes(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  if (k.state == State::ws_closing && (k.flags & f_close_after_send)) return;  // nothing more to read
  if (k.flags & f_const_close_sent) {
    scan_for_close(slot, data);
    return;
  }
  if (answer_idle_close(slot, data)) return;
  if (consume_idle_pongs(slot, data)) return;
  if (!attach_session(slot)) {
    std::uint64_t dropped = 0;
    if (conn_log_.allow(now_ms_, dropped))
      RG_LOG(warn, "worker %u: %u sessions active (max_active_sessions): closing a connection with 1013 "
                   "(%u similar lines suppressed)", id_, config_.max_active_sessions, dropped);
    answer_const(slot, Const::busy_ws, Refusal::busy);
    return;
  }
  ws::Session& s = sessions_[k.session];
  const std::uint64_t messages_before = counters_.messages_in_total.load();
  const bool refused_before = s.inbound_refused();
  const std::uint16_t close_before = s.close_code();
  feeding_slot_ = slot;
  const ws::Session::FeedResult fed = s.feed(data);
  feeding_slot_ = nil;
  if (fed == ws::Session::FeedResult::fatal) {
    teardown(slot);
    return;
  }
  if (s.inbound_refused() && !refused_before) counters_.inbound_refusals_total.add();
  account(slot);
  note_inbound_progress(slot, data.size(), counters_.messages_in_total.load() != messages_before);
  // slow_consumer_policy = close chose to close during this read: the close
  // waits behind unread output, so the linger's close_timeout bounds it.
  if (books_[k.session].slow_close_sent && k.state == State::open) start_linger(slot);
  // Counted once, in the read that made the session close (reads that
  // follow a close are drained, not judged again).
  if (close_before == 0 && s.close_code() != 0 && s.close_code() != 1001 && s.close_code() != 1000 &&
      s.close_code() != config_.slow_consumer_close_code) {
    counters_.protocol_closes_total.add();
  }
  after_ws_progress(slot);
}

// Decides what the connection does next once its session moved: send more,
// finish the close handshake, or give the session back to the pool.
void Worker::after_ws_progress(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.session == nil || k.state >= State::lingering) {
    pump_send(slot);
    return;
  }
  ws::Session& s = sessions_[k.session];
  pump_send(slot);
  if (k.flags & f_send_in_flight) return;
  if (s.close_sent()) {
    if (s.close_received()) {
      // RFC 6455 7.1.1: the server closes the TCP connection first.
      end_after_close(slot);
    } else if (s.read_closed()) {
      start_linger(slot);  // we failed the connection: let the peer read our close
    } else if (k.state != State::ws_closing) {
      k.state = State::ws_closing;
      timer_add(slot, TimerList::closing, config_.close_timeout_ms);
    }
    return;
  }
  if (s.quiescent() && k.aux == nil && !(k.flags & f_read_paused)) {
    release_session(k);
    if (k.timer_list == TimerList::active) arm_heartbeat(slot);
  }
}

bool Worker::attach_session(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.session != nil) return true;
  k.session = sessions_.acquire([&]() -> ws::Session* {
    auto* s = new (std::nothrow) ws::Session();
    if (s && !init_session(*s)) {
      delete s;
      return nullptr;
    }
    return s;
  });
  if (k.session == nil) return false;
  books_[k.session] = Book{};  // sized for max_active_sessions at start-up
  return true;
}

void Worker::release_session(Conn& k) {
  if (k.session == nil) return;
  ws::Session& s = sessions_[k.session];
  // An echo connection's book was its session's: it closes with it.
  if (k.sub == nil) outbound_.forget(books_[k.session], rel_now());
  k.flags &= static_cast<std::uint16_t>(~f_read_paused);
  if (s.reusable()) {
    s.recycle();
    sessions_.release(k.session);
  } else if (init_session(s)) {
    sessions_.release(k.session);
  }
  // (Out of memory re-creating the context retires this pool entry: its
  // index is leaked rather than a broken session handed out.)
  k.session = nil;
  // A subscriber's book also held the session's bytes: settle it without.
  if (k.sub != nil) account(static_cast<std::uint32_t>(&k - conns_));
}

// An idle connection whose next bytes are exactly one valid close frame (the
// usual way a client leaves), perhaps after the pongs to our pings, is
// answered from a 512-byte answer slot without attaching a wslay session: a
// mass disconnect of idle clients must not allocate a session for every one
// of them at once.  Anything else (a bad code, a bad reason) goes to the
// session path, which answers with the right close code and reason.
bool Worker::answer_idle_close(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  if (k.session != nil || k.aux != nil || k.state != State::open) return false;
  const ws::LoneClose close = ws::parse_lone_close(data);
  if (!close.found) return false;
  const std::uint32_t response = responses_.take();
  if (response == nil) return false;
  // Echo the status code (RFC 6455 5.5.1); an empty close gets an empty one.
  Response& out = responses_[response];
  out.len = static_cast<std::uint16_t>(
      ws::build_close_echo({reinterpret_cast<std::uint8_t*>(out.bytes.data()), out.bytes.size()}, close.code));
  out.sent = 0;
  if (close.pongs > 0) counters_.pongs_received_total.add();
  k.aux = response;
  k.flags |= f_close_after_send;
  k.state = State::ws_closing;
  timer_add(slot, TimerList::closing, config_.close_timeout_ms);
  pump_send(slot);
  return true;
}

// Pongs answering our pings on an idle connection are consumed here, without
// attaching a session: at a million connections, heartbeats must not cost a
// wslay context each.  Only reads made entirely of complete, well-formed
// pongs qualify; anything else goes to the session, which judges it.
bool Worker::consume_idle_pongs(std::uint32_t slot, std::span<const std::uint8_t> data) {
  const Conn& k = conns_[slot];
  if (k.session != nil || k.aux != nil || k.state != State::open || !ws::only_client_pongs(data)) return false;
  counters_.pongs_received_total.add();
  return true;
}

// After a constant close frame (shutdown, idle timeout), the peer's close
// is all we wait for.  Frames are scanned without a session; one split
// across reads is missed, and then EOF or close_timeout ends the connection.
void Worker::scan_for_close(std::uint32_t slot, std::span<const std::uint8_t> data) {
  if (ws::scan_for_close(data) == ws::CloseScan::close_found) end_after_close(slot);  // the server closes TCP first
}

// The close handshake is done, and the server closes the TCP connection
// first (RFC 6455 7.1.1).  Under TLS, close_notify goes before the FIN (RFC
// 8446 6.1): the connection lingers to say it, then closes on the peer's
// EOF or close_timeout.
void Worker::end_after_close(std::uint32_t slot) {
  if (conns_[slot].flags & f_tls) start_linger(slot);
  else teardown(slot);
}

// Closes an open connection with `code`: the close frame goes out through
// a session (attached if need be) after whatever frame is half sent; queued
// deliveries behind it are dropped, since nothing may follow a close.
void Worker::close_with(std::uint32_t slot, std::uint16_t code, std::string_view reason, bool linger) {
  Conn& k = conns_[slot];
  if (k.state != State::open) return;
  if (k.sub != nil) {
    // The head stays if the kernel is sending it (its bytes must stay
    // valid until the send completes) or has sent part of it.
    drop_deliveries(subs_[k.sub], (k.flags & f_send_in_flight) && (k.flags & f_send_delivery));
    account(slot);
  }
  if (!attach_session(slot)) {
    teardown(slot);
    return;
  }
  sessions_[k.session].queue_close(code, reason);
  after_ws_progress(slot);
  if (linger && k.state == State::open) start_linger(slot);
}


}  // namespace rg::server
