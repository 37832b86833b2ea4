// Timers: every per-connection timeout on one timing wheel (a connection
// has at most one timer; conn.h lists which), the accept queue's deadline
// list, heartbeats (ping, pong deadline, idle timeout) of idle connections
// without a session, and the stall timer of busy ones.
#include <algorithm>

#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

void Worker::timer_add(std::uint32_t slot, TimerList list, std::uint64_t timeout_ms) {
  timer_remove(slot);
  if (list == TimerList::queued) queue_.add(slot, list, rel_now(), timeout_ms);
  else wheel_.add(slot, list, rel_now(), timeout_ms);
}

void Worker::timer_remove(std::uint32_t slot) {
  if (conns_[slot].timer_list == TimerList::queued) queue_.remove(slot);
  else wheel_.remove(slot);
}

void Worker::run_timers() {
  const std::uint32_t now = rel_now();
  wheel_.expire(now, [this](std::uint32_t slot, TimerList kind) { on_timer(slot, kind); });
  for (std::uint32_t slot; (slot = queue_.pop_expired(TimerList::queued, now)) != nil;) {
    // Waited accept_queue_timeout for a token: an explicit 503, never a hang.
    --queue_depth_;
    begin_handshake(slot);
    answer_const(slot, Const::rate_http, Refusal::accept_queue_timeout);
  }
  if (rate_limited_) counters_.accept_queue_depth.set(queue_depth_);
}

void Worker::on_timer(std::uint32_t slot, TimerList kind) {
  switch (kind) {
    case TimerList::handshake:
      // Slowloris protection: an incomplete request gets 408, then the socket.
      answer_error(slot, 408, "upgrade request not completed within handshake_timeout", 0);
      break;
    case TimerList::closing: teardown(slot); break;
    case TimerList::active: on_stall(slot); break;
    case TimerList::heartbeat: on_heartbeat(slot); break;
    case TimerList::backpressure: on_backpressure_timeout(slot); break;
    case TimerList::queued:
    case TimerList::none: RG_ASSERT(false && "not a wheel timer"); break;
  }
}

// An idle open connection's one timer: the earliest of its next ping, its
// pong deadline and its idle deadline.  Received bytes only move last_rx_ms;
// the timer notices when it fires and re-arms from there.
void Worker::arm_heartbeat(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (!heartbeats_ || k.state != State::open) {
    timer_remove(slot);
    return;
  }
  const std::uint32_t now = rel_now();
  auto due_in = [now](std::uint32_t at) -> std::uint64_t {
    const auto d = static_cast<std::int32_t>(at - now);
    return d > 0 ? static_cast<std::uint64_t>(d) : 0;
  };
  std::uint64_t next = base::TimingWheel<Conn, TimerList>::timeout_ms_max;
  if (config_.idle_timeout_ms > 0)
    next = std::min(next, due_in(k.last_rx_ms + static_cast<std::uint32_t>(config_.idle_timeout_ms)));
  if (config_.ping_interval_ms > 0) {
    const auto interval = static_cast<std::uint32_t>(config_.ping_interval_ms);
    if (k.flags & f_ping_outstanding) {
      next = std::min(next, due_in(k.ping_sent_ms + static_cast<std::uint32_t>(config_.pong_timeout_ms)));
      const std::uint32_t since = now - k.ping_sent_ms;
      next = std::min(next, due_in(k.ping_sent_ms + (since / interval + 1) * interval));
    } else {
      next = std::min(next, due_in(k.last_rx_ms + interval));
    }
  }
  timer_add(slot, TimerList::heartbeat, next);
}

void Worker::on_heartbeat(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state != State::open) return;
  const std::uint32_t now = rel_now();
  if (config_.idle_timeout_ms > 0 && now - k.last_rx_ms >= config_.idle_timeout_ms) {
    counters_.idle_closes_total.add();
    if (k.session != nil || (k.flags & f_send_in_flight) || k.pending_const != Const::none) {
      teardown(slot);
      return;
    }
    k.pending_const = Const::idle_ws;
    k.state = State::ws_closing;
    timer_add(slot, TimerList::closing, config_.close_timeout_ms);
    pump_send(slot);
    return;
  }
  if (config_.ping_interval_ms > 0) {
    const bool outstanding = k.flags & f_ping_outstanding;
    if (outstanding && now - k.ping_sent_ms >= config_.pong_timeout_ms) {
      // Nothing at all for pong_timeout after a ping: the peer is gone
      // (no FIN ever came).  No close frame: nobody would read it.
      counters_.heartbeat_timeouts_total.add();
      teardown(slot);
      return;
    }
    const bool due = outstanding ? (now - k.ping_sent_ms) >= config_.ping_interval_ms
                                 : (now - k.last_rx_ms) >= config_.ping_interval_ms;
    // A connection with output in flight is not idle: its next turn to be
    // pinged comes when it is.
    if (due && k.session == nil && !(k.flags & f_send_in_flight) && k.pending_const == Const::none) {
      k.pending_const = Const::ping_ws;
      if (!outstanding) {
        k.flags |= f_ping_outstanding;
        k.ping_sent_ms = now;
      }
      counters_.pings_sent_total.add();
      pump_send(slot);
    }
  }
  arm_heartbeat(slot);
}

// Progress on a connection with a session: push its stall deadline back
// (a backpressured one is on backpressure_timeout instead).
void Worker::note_progress(std::uint32_t slot) {
  Conn& k = conns_[slot];
  if (k.state == State::open && k.timer_list != TimerList::backpressure)
    timer_add(slot, TimerList::active, config_.stall_timeout_ms);
}

// Inbound progress after a read.  Between messages, or when a message was
// completed, any bytes are progress.  Mid-message, the stall timer moves
// only after stall_timeout's worth of min_message_rate bytes since it last
// moved: a trickle (one byte every few seconds) that never adds up to that
// cannot hold a half-sent message, and the session and budget behind it,
// for longer than stall_timeout.
void Worker::note_inbound_progress(std::uint32_t slot, std::size_t bytes, bool message_completed) {
  Conn& k = conns_[slot];
  Book* b = book_of(k);
  if (k.state != State::open || k.session == nil || !b) return;
  const bool mid = sessions_[k.session].mid_message();
  if (message_completed || !b->mid_message) {
    // A message ended in this read, or one begins: a fresh window.
    b->mid_message = mid;
    b->window_bytes = 0;
    note_progress(slot);
    return;
  }
  b->mid_message = mid;
  b->window_bytes = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(std::uint64_t{b->window_bytes} + bytes, progress_window_bytes_));
  if (!mid || b->window_bytes >= progress_window_bytes_) {
    b->window_bytes = 0;
    note_progress(slot);
  }
}

// No progress for stall_timeout: a half-sent message or a peer that stopped
// reading.  Tell the peer if a send can still get through, else just go.
void Worker::on_stall(std::uint32_t slot) {
  Conn& k = conns_[slot];
  std::uint64_t dropped = 0;
  if (conn_log_.allow(now_ms_, dropped))
    RG_LOG(info, "worker %u: slot %u made no progress for %ums; closing (%u similar lines suppressed)", id_, slot,
           config_.stall_timeout_ms, dropped);
  const Book* b = book_of(k);
  if (b && b->mid_message) {
    counters_.message_timeouts_total.add();
    if (!(k.flags & f_send_in_flight)) {
      close_with(slot, 1008, "message not completed: less than min_message_rate bytes per second");
      return;
    }
  }
  if (k.session == nil || (k.flags & f_send_in_flight)) {
    teardown(slot);
    return;
  }
  close_with(slot, 1008, "no progress within stall_timeout");
}


}  // namespace rg::server
