// A connection record's life below the protocols: arming its multishot
// recv, handing what arrives to its byte stream, lingering after a final
// answer, tearing down (cancel what is in flight, then close_direct) and
// releasing the record and everything attached to it.
#include <cstring>

#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

void Worker::arm_recv(std::uint32_t slot) {
  Conn& k = conns_[slot];
  RG_ASSERT(!(k.flags & f_recv_armed));
  if (!ring_.recv_multishot(slot, buffer_group, tag(op_recv, slot))) {
    teardown(slot);
    return;
  }
  k.flags |= f_recv_armed;
  ++k.ops;
}

void Worker::on_recv(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  const bool ended = !c.more();
  if (ended) {
    k.flags &= static_cast<std::uint16_t>(~f_recv_armed);
    RG_ASSERT(k.ops > 0);
    --k.ops;
  }
  switch (c.outcome()) {
    case ring::Outcome::ok:
      if (c.res == 0) {
        if (c.has_buffer()) buffers_.recycle(c.buffer_id());
        // The peer closed its side.  Nothing more can be said to it usefully.
        if (k.state < State::lingering) stream_of(k).on_eof(slot);  // not after our own answer or refusal
        teardown(slot);
        break;
      }
      RG_ASSERT(c.has_buffer());
      // Any bytes prove the peer alive: the heartbeat timer reads these
      // lazily when it fires, so traffic costs no timer updates.
      k.last_rx_ms = rel_now();
      k.flags &= static_cast<std::uint16_t>(~f_ping_outstanding);
      // Lingering (or going away), input is only drained: not even a TLS
      // stream needs to see it.
      if (k.state < State::lingering) {
        const std::span<const std::uint8_t> wire = buffers_.buffer(c.buffer_id(), static_cast<std::uint32_t>(c.res));
        if (k.state == State::handshake) on_handshake_wire(slot, wire);
        else stream_of(k).on_recv(slot, wire);
      }
      buffers_.recycle(c.buffer_id());
      if (ended && !(k.flags & (f_recv_armed | f_rearm_queued | f_read_paused)) && k.state != State::free &&
          k.state < State::tearing_down) {
        k.flags |= f_rearm_queued;
        rearm_.push_back(slot);
      }
      break;
    case ring::Outcome::no_buffers:
      // The buffer ring ran dry: re-armed at the end of this loop turn, once
      // this turn's buffers are back.
      if (!(k.flags & (f_rearm_queued | f_read_paused)) && k.state < State::tearing_down) {
        k.flags |= f_rearm_queued;
        rearm_.push_back(slot);
      }
      break;
    case ring::Outcome::cancelled:  // we paused reading or are tearing down
      if (c.has_buffer()) buffers_.recycle(c.buffer_id());
      break;
    case ring::Outcome::peer_gone:  // reset, timed out: the connection is gone
      if (c.has_buffer()) buffers_.recycle(c.buffer_id());
      teardown(slot);
      break;
    case ring::Outcome::table_full:
    case ring::Outcome::unexpected:
      if (c.has_buffer()) buffers_.recycle(c.buffer_id());
      count_unexpected(op_recv, c.error());
      teardown(slot);
      break;
  }
  maybe_finish_teardown(slot);
}

void Worker::on_stream_output(std::uint32_t slot) {
  const Conn& k = conns_[slot];
  if (k.state == State::free || k.state >= State::tearing_down) return;
  pump_send(slot);
}

// The TLS stream ended (close_notify, or a fatal error with its alert
// queued): say what is left, FIN, and drain until the peer closes.
void Worker::on_stream_end(std::uint32_t slot, bool) {
  const Conn& k = conns_[slot];
  if (k.state == State::free || k.state >= State::lingering) return;
  start_linger(slot);
}

// Application bytes from the connection's byte stream, to whichever room
// its state belongs to.
void Worker::on_bytes(std::uint32_t slot, std::span<const std::uint8_t> bytes) {
  switch (conns_[slot].state) {
    case State::handshake: handle_handshake_bytes(slot, bytes); break;
    case State::open:
    case State::ws_closing: handle_ws_bytes(slot, bytes); break;
    default: break;  // lingering or going away: input is discarded
  }
}

void Worker::start_linger(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state >= State::lingering) return;
  k.state = State::lingering;
  timer_add(slot, TimerList::closing, config_.close_timeout_ms);
  pump_send(slot);
}

void Worker::teardown(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state >= State::tearing_down || k.state == State::free) return;
  timer_remove(slot);
  k.state = State::tearing_down;
  // Cancel each operation by its own user_data: the kernel finds those in a
  // hash table.  Cancelling by descriptor walks every armed request of the
  // ring, which made closing 30,000 connections take ~15 s (O(n^2)).
  bool stalled = false;
  if (k.flags & f_recv_armed) {
    if (ring_.cancel_tag(tag(op_recv, slot), tag(op_cancel, slot))) ++k.ops;
    else stalled = true;
  }
  if (k.flags & f_send_in_flight) {
    if (ring_.cancel_tag(tag(op_send, slot), tag(op_cancel, slot))) ++k.ops;
    else stalled = true;
  }
  if (stalled) {
    stalled_teardowns_.push_back(slot);
    return;
  }
  maybe_finish_teardown(slot);
}

void Worker::maybe_finish_teardown(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state != State::tearing_down || k.ops != 0) return;
  if (!ring_.close_direct(slot, tag(op_close, slot))) {
    stalled_teardowns_.push_back(slot);  // retried next loop turn
    return;
  }
  k.state = State::closing;
  ++k.ops;
}

void Worker::on_close(std::uint32_t slot, const ring::Completion& c) {
  Conn& k = conns_[slot];
  RG_ASSERT(k.ops > 0);
  --k.ops;
  // The slot is released either way: a failed close_direct leaves nothing
  // of ours behind, and the kernel frees the socket with the table entry.
  if (!c.ok()) count_unexpected(op_close, c.error());
  release(slot);
}

void Worker::release_aux(Conn& k) {
  if (k.aux == nil) return;
  if (k.flags & f_aux_parser) parsers_.release(k.aux);
  else responses_.give(k.aux);
  k.aux = nil;
  k.flags &= static_cast<std::uint16_t>(~f_aux_parser);
}

void Worker::release(std::uint32_t slot) {
  Conn& k = conns_[slot];
  RG_ASSERT(k.ops == 0);
  release_aux(k);
  release_session(k);
  if (k.sub != nil) release_subscriber(slot);
  stream_of(k).release(slot);
  if (k.flags & f_upgraded) counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
  set_awaiting_proxy(slot, false);
  if (per_ip_ && ip_keys_[slot] != PerIpCounts::none) {
    shared_.per_ip.remove(id_, ip_keys_[slot]);
    ip_keys_[slot] = PerIpCounts::none;
  }
  counters_.live_slots.sub();
  k.generation = (k.generation + 1) & ring::generation_mask;
  k.state = State::free;
  k.flags = 0;
  k.pending_const = Const::none;
  k.endpoint = Endpoint::none;
  if (accept_paused_ && recently_freed_.size() < recently_freed_max) recently_freed_.push_back(slot);
}


}  // namespace rg::server
