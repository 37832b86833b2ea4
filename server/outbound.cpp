// Outbound: every byte a worker holds for a connection and how it leaves.
// The Outbound class (outbound.h) keeps the accounts and the one
// slow-consumer policy; the worker's part here picks what a connection sends
// next (a half-sent delivery, a constant, an HTTP answer, the session's
// frames, then deliveries), hands it to the byte stream, settles the account
// when the send completes, and pauses or resumes reading on backpressure.
#include <cstring>

#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

namespace {
// A fatal internal_error alert (RFC 8446 6.2) in a plaintext record: how a
// TLS connection refused before its handshake began (at capacity, over
// tls_handshakes_max, draining, or silent past handshake_timeout) is told,
// without spending a handshake on it.
constexpr std::array<std::uint8_t, 7> tls_refusal_alert_bytes = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80};
constexpr std::span<const std::uint8_t> tls_refusal_alert{tls_refusal_alert_bytes};
}  // namespace

// ---------------------------------------------------------------- Outbound

void Outbound::init(const Config& config, std::uint64_t budget_bytes, WorkerCounters& counters) noexcept {
  counters_ = &counters;
  budget_bytes_ = budget_bytes;
  on_bytes_ = config.backpressure_on_bytes();
  off_bytes_ = config.backpressure_off_bytes();
  drop_ = config.slow_consumer_policy == SlowConsumerPolicy::drop;
  slow_close_code_ = static_cast<std::uint16_t>(config.slow_consumer_close_code);
}

Outbound::Verdict Outbound::admit(Book& b, std::uint64_t bytes, std::uint64_t held_bytes) noexcept {
  if (b.slow_close_sent) return Verdict::drop;  // the close is queued: nothing may follow it
  const bool over_budget = held_bytes + bytes > budget_bytes_;
  if (!b.backpressured && !over_budget) return Verdict::queue;
  if (over_budget) counters_->buffer_budget_hits_total.add();
  if (drop_) {
    counters_->slow_consumer_drops_total.add();
    return Verdict::drop;
  }
  b.slow_close_sent = true;
  counters_->slow_consumer_closes_total.add();
  return Verdict::close;
}

Outbound::Change Outbound::settle(Book& b, std::uint64_t bytes, std::uint32_t messages, bool open,
                                  std::uint32_t now_ms, std::uint64_t inbound_bytes) noexcept {
  RG_ASSERT(buffered_bytes_ >= b.bytes + b.inbound_bytes && messages_pending_ >= b.messages &&
            inbound_bytes_ >= b.inbound_bytes);
  buffered_bytes_ = buffered_bytes_ - b.bytes - b.inbound_bytes + bytes + inbound_bytes;
  inbound_bytes_ = inbound_bytes_ - b.inbound_bytes + inbound_bytes;
  messages_pending_ = messages_pending_ - b.messages + messages;
  b.bytes = bytes;
  b.inbound_bytes = inbound_bytes;
  b.messages = messages;
  counters_->buffered_bytes.set(buffered_bytes_);
  counters_->inbound_bytes.set(inbound_bytes_);
  counters_->messages_pending.set(messages_pending_);
  if (bytes > high_water_bytes_) {
    high_water_bytes_ = bytes;
    counters_->buffered_max_connection_bytes.set(bytes);
  }
  if (!b.backpressured && bytes > on_bytes_ && open) {
    b.backpressured = true;
    b.backpressure_since_ms = now_ms;
    counters_->backpressure_activations_total.add();
    counters_->backpressured_connections.set(++backpressured_);
    return Change::backpressure_on;
  }
  if (b.backpressured && bytes <= off_bytes_) {
    end_backpressure(b, now_ms);
    return Change::backpressure_off;
  }
  return Change::none;
}

void Outbound::end_backpressure(Book& b, std::uint32_t now_ms) noexcept {
  RG_ASSERT(b.backpressured && backpressured_ > 0);
  b.backpressured = false;
  counters_->backpressure_ms.record(now_ms - b.backpressure_since_ms);
  counters_->backpressured_connections.set(--backpressured_);
}

void Outbound::forget(Book& b, std::uint32_t now_ms) noexcept {
  RG_ASSERT(buffered_bytes_ >= b.bytes + b.inbound_bytes && messages_pending_ >= b.messages &&
            inbound_bytes_ >= b.inbound_bytes);
  buffered_bytes_ -= b.bytes + b.inbound_bytes;
  inbound_bytes_ -= b.inbound_bytes;
  messages_pending_ -= b.messages;
  counters_->buffered_bytes.set(buffered_bytes_);
  counters_->inbound_bytes.set(inbound_bytes_);
  counters_->messages_pending.set(messages_pending_);
  if (b.backpressured) end_backpressure(b, now_ms);
  b = Book{};
}

// ---------------------------------------------------------------- the worker's send path

void Worker::publish_segment_gauges() noexcept {
  // Held by connections, and freed ones kept for reuse, apart: the first
  // reads 0 once every connection is idle, the second is a cache.
  counters_.segment_bytes.set(segments_.live() * std::uint64_t{segments_.segment_size()});
  counters_.segment_cache_bytes.set(segments_.cached() * std::uint64_t{segments_.segment_size()});
  counters_.segments_live.set(segments_.live());
  counters_.segment_allocations_total.set(segments_.allocations_total());
}

void Worker::pump_send(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if ((k.flags & f_send_in_flight) || k.state >= State::tearing_down) return;
  ByteStream& stream = stream_of(k);
  // The stream's own wire bytes (a TLS handshake flight, tickets, an alert,
  // close_notify) go before anything of ours.
  const auto send_stream_output = [&] {
    if (!stream.send(slot, {}, tag(op_send, slot))) {
      teardown(slot);
      return;
    }
    k.flags = static_cast<std::uint16_t>(
        (k.flags & ~(f_send_from_session | f_send_const | f_send_delivery | f_send_raw)) | f_send_in_flight |
        f_send_stream);
    ++k.ops;
  };
  if (stream.has_output(slot)) {
    send_stream_output();
    return;
  }
  std::span<const std::uint8_t> bytes;
  std::size_t iov_count = 0;  // the session's output, gathered into send_vecs_
  std::uint16_t source = 0;
  const bool response_pending =
      k.aux != nil && !(k.flags & f_aux_parser) && responses_[k.aux].sent < responses_[k.aux].len;
  SubState* q = k.sub != nil ? &subs_[k.sub] : nullptr;
  if (q && q->head != nil && q->offset > 0) {
    // A delivery frame half sent: nothing may interleave with its rest.
    bytes = delivery_bytes(*q);
    source = f_send_delivery;
  } else if (k.pending_const != Const::none && !response_pending) {
    bytes = const_answer(k.pending_const);
    source = f_send_const;
    k.sent_const = k.pending_const;
    if ((k.flags & f_tls) && !tls_.started(slot)) {
      // Refused before its TLS handshake began: no SSL is spent on the
      // refusal, which goes out as a plaintext fatal alert.
      if (!plain_.send(slot, tls_refusal_alert, tag(op_send, slot))) {
        teardown(slot);
        return;
      }
      k.flags = static_cast<std::uint16_t>(
          (k.flags & ~(f_send_from_session | f_send_delivery | f_send_stream)) | f_send_in_flight | f_send_const |
          f_send_raw);
      ++k.ops;
      return;
    }
  } else if (response_pending) {
    Response& out = responses_[k.aux];
    bytes = {reinterpret_cast<const std::uint8_t*>(out.bytes.data()) + out.sent,
             static_cast<std::size_t>(out.len - out.sent)};
  } else if (k.session != nil && (k.state != State::lingering || sessions_[k.session].has_output())) {
    // Lingering: only the close frame of a failed connection is left.
    iov_count = sessions_[k.session].next_output(send_vecs_[k.session].iov);
    if (iov_count > 0) source = f_send_from_session;
  }
  // Deliveries go out between the session's frames (pongs, closes), never
  // inside one, and only while the connection is open.
  // A session that queued or received a close ends the stream: nothing may
  // follow its close frame (RFC 6455 5.5.1).
  if (bytes.empty() && iov_count == 0 && q && q->head != nil && k.state == State::open && !response_pending &&
      k.pending_const == Const::none &&
      (k.session == nil || (!sessions_[k.session].has_output() && !sessions_[k.session].read_closed()))) {
    bytes = delivery_bytes(*q);
    source = f_send_delivery;
  }
  if (bytes.empty() && iov_count == 0) {
    // Lingering only drains input: a session whose close frame is out has
    // nothing left to do, and must not hold a pool entry for close_timeout.
    if (k.state == State::lingering && k.session != nil) release_session(k);
    if (k.state == State::lingering && !(k.flags & f_shutdown_sent)) {
      // TLS says close_notify before FIN (RFC 8446 6.1).
      if (stream.close_output(slot)) {
        send_stream_output();
        return;
      }
      // Everything is said: send FIN, keep reading until the peer closes so
      // unread input never turns our answer into a reset.
      // No SQE: the FIN is tried again on the next send completion, and
      // close_timeout ends the linger regardless.
      if (stream.shutdown_write(slot, tag(op_shutdown, slot))) {
        k.flags |= f_shutdown_sent;
        ++k.ops;
      }
    }
    return;
  }
  if (!stream.ready_to_send(slot)) {
    // TLS with every record buffer in use: on_stream_output pumps again
    // when one is back.
    if (source == f_send_from_session) sessions_[k.session].output_sent(0);
    return;
  }
  bool queued = false;
  if (iov_count == 1) {
    const iovec& v = send_vecs_[k.session].iov[0];
    queued = stream.send(slot, {static_cast<const std::uint8_t*>(v.iov_base), v.iov_len}, tag(op_send, slot));
  } else if (iov_count > 1) {
    SendVec& v = send_vecs_[k.session];
    v.hdr = msghdr{};
    v.hdr.msg_iov = v.iov.data();
    v.hdr.msg_iovlen = iov_count;
    queued = stream.send_gather(slot, &v.hdr, tag(op_send, slot));
  } else {
    queued = stream.send(slot, bytes, tag(op_send, slot));
  }
  if (!queued) {
    if (source == f_send_from_session) sessions_[k.session].output_sent(0);
    teardown(slot);
    return;
  }
  k.flags = static_cast<std::uint16_t>(
      (k.flags & ~(f_send_from_session | f_send_const | f_send_delivery | f_send_stream | f_send_raw)) |
      f_send_in_flight | source);
  ++k.ops;
}

void Worker::on_send(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  RG_ASSERT(k.ops > 0);
  --k.ops;
  k.flags &= static_cast<std::uint16_t>(~f_send_in_flight);
  // The application bytes this send covered (the byte stream knows; for
  // plain TCP, the wire bytes).
  ByteStream& stream = (k.flags & f_send_raw) ? static_cast<ByteStream&>(plain_) : stream_of(k);
  const std::int32_t covered = stream.sent(slot, c.res, tag(op_send, slot));
  if (covered == ByteStream::still_sending) {
    // The stream sent the rest of its records under the same tag.
    ++k.ops;
    k.flags |= f_send_in_flight;
    return;
  }
  const std::size_t sent = covered > 0 ? static_cast<std::size_t>(covered) : 0;
  if (k.flags & f_send_from_session) {
    sessions_[k.session].output_sent(sent);
  } else if (k.flags & f_send_delivery) {
    delivery_sent(slot, sent);
  } else if (k.flags & f_send_const) {
    // Constant answers are a few hundred bytes: one send takes them whole.
    // A short send (never seen) ends the connection rather than truncate.
    const std::size_t expected = (k.flags & f_send_raw) ? tls_refusal_alert.size() : const_answer(k.sent_const).size();
    if (c.ok() && sent != expected) {
      teardown(slot);
      maybe_finish_teardown(slot);
      return;
    }
    if (c.ok() && (k.sent_const == Const::shutdown_ws || k.sent_const == Const::idle_ws))
      k.flags |= f_const_close_sent;
    // A constant chosen while this one was in flight (a ping overtaken by a
    // close) is still to be sent.
    if (c.ok() && k.pending_const == k.sent_const) k.pending_const = Const::none;
  } else if (k.aux != nil && !(k.flags & f_aux_parser)) {
    Response& out = responses_[k.aux];
    out.sent = static_cast<std::uint16_t>(out.sent + sent);
    if (out.sent == out.len && (k.flags & f_close_after_send)) {
      // Our close reply is out and the peer's close was in: the server
      // closes the TCP connection first (RFC 6455 7.1.1).
      release_aux(k);
      end_after_close(slot);
      maybe_finish_teardown(slot);
      return;
    }
    // An error answer's slot goes back as soon as it is sent, not after the
    // linger: lingering clients must not hold answer slots.
    if (out.sent == out.len && k.state != State::handshake) release_aux(k);
  }
  if (!c.ok()) {
    // EPIPE, ECONNRESET: the peer is gone; ECANCELED: we are tearing down.
    const ring::Outcome outcome = c.outcome();
    if (outcome != ring::Outcome::peer_gone && outcome != ring::Outcome::cancelled) count_unexpected(op_send, c.error());
    teardown(slot);
    maybe_finish_teardown(slot);
    return;
  }
  if (k.state >= State::tearing_down) {
    maybe_finish_teardown(slot);
    return;
  }
  if (k.state == State::lingering) {
    pump_send(slot);
    return;
  }
  if (k.session != nil || (k.flags & f_send_delivery)) {
    account(slot);
    // A subscriber whose queue just emptied is idle again: back to
    // heartbeats (one timer update per delivery, not a stall re-arm too).
    const Book* book = book_of(k);
    if (k.state == State::open && k.sub != nil && subs_[k.sub].head == nil && k.session == nil)
      arm_heartbeat(slot);
    else if (!book || !book->mid_message)  // mid-message, only inbound bytes count (timers.cpp)
      note_progress(slot);
  }
  after_ws_progress(slot);
}

// The book of a connection's outbound bytes: its subscriber's on the
// pub/sub endpoint (delivery queue plus any session), else its session's.
Book* Worker::book_of(const Conn& k) noexcept {
  if (k.sub != nil) return &subs_[k.sub].book;
  if (k.session != nil) return &books_[k.session];
  return nullptr;
}

// O(1) accounting after anything that changed a connection's outbound
// queue: Outbound moves the worker's totals by the difference and says when
// backpressure starts or ends; the worker pauses reads and times it.
void Worker::account(std::uint32_t slot) {
  Conn& k = conns_[slot];
  Book* book = book_of(k);
  if (!book) return;
  std::uint64_t bytes = 0;
  std::uint32_t messages = 0;
  if (k.session != nil) {
    const ws::Session& s = sessions_[k.session];
    bytes = s.queued_bytes();
    messages = static_cast<std::uint32_t>(s.queued_messages());
  }
  if (k.sub != nil) {
    bytes += subs_[k.sub].bytes;
    messages += subs_[k.sub].count;
  }
  const std::uint64_t inbound = k.session != nil ? sessions_[k.session].inbound_bytes() : 0;
  switch (outbound_.settle(*book, bytes, messages, k.state == State::open, rel_now(), inbound)) {
    case Outbound::Change::backpressure_on:
      pause_reading(slot);
      timer_add(slot, TimerList::backpressure, config_.backpressure_timeout_ms);
      break;
    case Outbound::Change::backpressure_off: after_backpressure(slot); break;
    case Outbound::Change::none: break;
  }
}

// Backpressure ended: back to the stall timer, and reading resumes.
void Worker::after_backpressure(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.timer_list == TimerList::backpressure) timer_remove(slot);
  if (k.state == State::open) {
    note_progress(slot);
    maybe_resume_reading(slot);
  }
}

// backpressure_timeout: a connection still over the threshold is a slow
// consumer and goes; one that drained part of the way carries on.
void Worker::on_backpressure_timeout(std::uint32_t slot) {
  Conn& k = conns_[slot];
  Book* book = book_of(k);
  if (!book || !book->backpressured) return;
  if (outbound_.still_over(*book)) {
    close_slow_consumer(slot);
    return;
  }
  outbound_.end_backpressure(*book, rel_now());
  after_backpressure(slot);
}

void Worker::close_slow_consumer(std::uint32_t slot) {
  Conn& k = conns_[slot];
  const Book& b = *book_of(k);
  std::uint64_t dropped = 0;
  if (conn_log_.allow(now_ms_, dropped))
    RG_LOG(info, "worker %u: slot %u still had %u bytes buffered after backpressure_timeout (%u ms): closing it "
                 "as a slow consumer (%u similar lines suppressed)", id_, slot, b.bytes,
           config_.backpressure_timeout_ms, dropped);
  if (b.slow_close_sent) {
    after_ws_progress(slot);
    if (k.state == State::open) start_linger(slot);
    return;
  }
  book_of(k)->slow_close_sent = true;
  counters_.slow_consumer_closes_total.add();
  // The close frame queues behind output the peer is not reading, so
  // close_timeout (the linger) bounds how long we wait for it to get out.
  close_with(slot, outbound_.slow_close_code(), "slow consumer");
}

void Worker::pause_reading(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.flags & f_read_paused) return;
  k.flags |= f_read_paused;
  // The recv's final CQE (ECANCELED) clears f_recv_armed; data CQEs already
  // posted before it are still handled, which the queue limit absorbs.
  // Without an SQE for the cancel, reads go on: the budget check still
  // bounds what is queued, and backpressure_timeout still ends the episode.
  if ((k.flags & f_recv_armed) && ring_.cancel_tag(tag(op_recv, slot), tag(op_cancel, slot))) ++k.ops;
}

void Worker::maybe_resume_reading(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (!(k.flags & f_read_paused) || k.state != State::open) return;
  // A subscriber's book, not only a session's: a subscriber without a
  // session whose queue drained reads (and hears pongs) again.
  const Book* book = book_of(k);
  if (!book || book->backpressured) return;
  k.flags &= static_cast<std::uint16_t>(~f_read_paused);
  if (!(k.flags & (f_recv_armed | f_rearm_queued))) {
    k.flags |= f_rearm_queued;
    rearm_.push_back(slot);  // armed at the end of this loop turn
  }
}


}  // namespace rg::server
