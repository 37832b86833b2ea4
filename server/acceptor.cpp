// Accepting: the multishot accept (or, with per_ip_limit, single accepts
// that report the peer), admission at accept time (per-IP limit, accept-rate
// token bucket and its queue), the reserve of table slots kept for explicit
// refusals, and a new connection's record.
#include <cerrno>
#include <cstring>

#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

// Arms whatever accepts are missing: the multishot one, or with
// per_ip_limit each idle single accept.  Cheap enough to call every turn.
// Each listener (plain, TLS) has its own.
void Worker::arm_accept() {
  if (draining_ || accept_paused_) return;
  if (peer_accepts_.empty()) {
    for (std::uint32_t l = 0; l < listeners_max; ++l)
      if (listen_fds_[l] >= 0 && !accept_armed_[l] && ring_.accept_multishot_direct(listen_fds_[l], {op_accept, 0, l}))
        accept_armed_[l] = true;
    return;
  }
  for (std::uint32_t i = 0; i < peer_accepts_.size(); ++i) {
    PeerAccept& a = peer_accepts_[i];
    if (a.armed) continue;
    if (!ring_.accept_direct_with_peer(listen_fds_[a.listener], &a.addr, &a.addr_len, {op_accept_peer, 0, i})) return;
    a.armed = true;
  }
}

bool Worker::accepting() const noexcept {
  if (accept_armed_[0] || accept_armed_[1]) return true;
  for (const PeerAccept& a : peer_accepts_)
    if (a.armed) return true;
  return false;
}

void Worker::on_accept(const ring::Completion& c) {
  const std::uint32_t listener = c.tag.index;
  RG_ASSERT(listener < listeners_max);
  if (!c.more()) accept_armed_[listener] = false;
  if (c.ok()) {
    counters_.accepted_total.add();
    admit(static_cast<std::uint32_t>(c.res), PerIpCounts::none, listener == listener_tls, false);
    if (counters_.live_slots.load() >= accept_limit_) pause_accepting();
  } else {
    on_accept_error(c.error());
  }
  arm_accept();
}

void Worker::on_accept_peer(const ring::Completion& c) {
  RG_ASSERT(c.tag.index < peer_accepts_.size());
  PeerAccept& a = peer_accepts_[c.tag.index];
  a.armed = false;
  if (c.ok()) {
    counters_.accepted_total.add();
    // A balancer's connection is counted per IP once its PROXY header says
    // whose it is (proxy.cpp), not under the balancer's address.
    const bool from_balancer = proxy_on_ && any_contains(shared_.proxy_from, PeerAddress::from(a.addr));
    admit(static_cast<std::uint32_t>(c.res), per_ip_ && !from_balancer ? PerIpCounts::key(a.addr) : PerIpCounts::none,
          a.listener == listener_tls, from_balancer);
    if (counters_.live_slots.load() >= accept_limit_) pause_accepting();
  } else {
    on_accept_error(c.error());
  }
  arm_accept();
}

void Worker::on_accept_error(int err) {
  const ring::Outcome outcome = ring::outcome_of(-err);
  if (outcome == ring::Outcome::table_full) {
    // The regular part of the table is full.  Re-arm once a slot frees;
    // meanwhile answer newcomers from the reserve instead of leaving them in
    // the backlog.
    accept_paused_ = true;
    counters_.accept_errors_total.add();
    std::uint64_t dropped = 0;
    if (accept_log_.allow(now_ms_, dropped))
        RG_LOG(warn, "worker %u: descriptor table full (%u slots): the kernel dropped a connection; the reserve "
                   "(%u slots) was too small for this burst (%u similar lines suppressed)", id_, slots_,
             slots_ - accept_limit_, dropped);
    pause_accepting();
  } else if (outcome == ring::Outcome::peer_gone) {
    // The client gave up between SYN and accept (ECONNABORTED): it is gone,
    // nothing of ours is.
    counters_.accept_errors_total.add();
  } else if (outcome != ring::Outcome::cancelled) {
    counters_.accept_errors_total.add();
    count_unexpected(op_accept, err);
  }
}

void Worker::pause_accepting() {
  if (!accept_paused_) {
    accept_paused_ = true;
    std::uint64_t dropped = 0;
    if (accept_log_.allow(now_ms_, dropped))
      RG_LOG(warn, "worker %u: %u of %u table slots in use; refusing newcomers with 503 until a connection "
                   "closes (%u similar lines suppressed)", id_, accept_limit_, slots_, dropped);
  }
  cancel_accepts();
  arm_refusals();
}

// Cancels the armed accepts.  They stay marked armed until their ECANCELED
// arrives: single accepts' address buffers are the kernel's until then.  A
// cancel that finds no SQE is retried on the next loop turn.
void Worker::cancel_accepts() {
  accept_cancel_pending_ = false;
  for (std::uint32_t l = 0; l < listeners_max; ++l)
    if (accept_armed_[l] && !ring_.cancel_tag({op_accept, 0, l}, {op_accept_cancel, 0, 0}))
      accept_cancel_pending_ = true;
  for (std::uint32_t i = 0; i < peer_accepts_.size(); ++i)
    if (peer_accepts_[i].armed && !ring_.cancel_tag({op_accept_peer, 0, i}, {op_accept_cancel, 0, 0}))
      accept_cancel_pending_ = true;
}

// Keeps a few single accepts into free slots in flight while accepting is
// paused, so every newcomer gets an explicit 503 instead of a backlog wait.
void Worker::arm_refusals() {
  constexpr std::uint32_t refusal_accepts_max = 4;
  // Claimed slots plus live ones never exceed the table: the reserve is what
  // keeps this search short.
  while (accept_paused_ && !draining_ && refusal_accepts_ < refusal_accepts_max &&
         counters_.live_slots.load() + refusal_accepts_ < slots_) {
    std::uint32_t slot = nil;
    while (slot == nil && !recently_freed_.empty()) {
      const std::uint32_t s = recently_freed_.back();
      recently_freed_.pop_back();
      if (conns_[s].state == State::free) slot = s;
    }
    for (std::uint32_t i = 0; slot == nil && i < slots_; ++i) {
      const std::uint32_t s = (claim_cursor_ + i) % slots_;
      if (conns_[s].state == State::free) {
        slot = s;
        break;
      }
    }
    if (slot == nil) return;
    claim_cursor_ = (slot + 1) % slots_;
    // Both listeners get refusal accepts, in turn.
    std::uint32_t listener = next_refusal_listener_;
    if (listen_fds_[listener] < 0) listener = listener == 0 ? 1 : 0;
    next_refusal_listener_ = listener == 0 ? 1 : 0;
    if (!ring_.accept_into(listen_fds_[listener], slot, {op_accept_reserved, conns_[slot].generation, slot})) return;
    conns_[slot].state = State::claimed;
    // Which listener the slot waits on, until claim_record resets the record.
    conns_[slot].flags = listener == listener_tls ? f_tls : 0;
    ++refusal_accepts_;
  }
}

void Worker::on_accept_reserved(const ring::Completion& c) {
  --refusal_accepts_;
  const std::uint32_t slot = c.tag.index;
  RG_ASSERT(conns_[slot].state == State::claimed);
  conns_[slot].state = State::free;
  const bool tls = (conns_[slot].flags & f_tls) != 0;
  conns_[slot].flags = 0;
  if (!c.ok()) {
    if (c.error() != ECANCELED) arm_refusals();
    return;
  }
  counters_.accepted_total.add();
  claim_record(slot);
  if (tls) conns_[slot].flags |= f_tls;
  begin_handshake(slot);
  if (conns_[slot].state == State::handshake)
    answer_const(slot, draining_ ? Const::shutdown_http : Const::busy_http,
                 draining_ ? Refusal::shutdown : Refusal::table_full);
  arm_refusals();
}

// A new connection's record: reset, counted, on no list, in no state yet.
void Worker::claim_record(std::uint32_t slot) {
  RG_ASSERT(slot < slots_);
  Conn& k = conns_[slot];
  RG_ASSERT(k.state == State::free && k.ops == 0);
  const std::uint32_t generation = k.generation;
  k = Conn{};
  k.generation = generation;
  k.aux = nil;
  k.session = nil;
  k.sub = nil;
  k.timer_prev = k.timer_next = nil;
  if (per_ip_) ip_keys_[slot] = PerIpCounts::none;
  counters_.live_slots.add();
}

// Starts reading the upgrade request, under handshake_timeout.
void Worker::begin_handshake(std::uint32_t slot) {
  Conn& k = conns_[slot];
  k.state = State::handshake;
  // One handshake_timeout covers the TLS handshake and the HTTP upgrade.
  if (k.flags & f_tls) tls_.accept(slot);
  timer_add(slot, TimerList::handshake, config_.handshake_timeout_ms);
  arm_recv(slot);
}

// Admission at accept time: the per-IP limit, then the accept-rate bucket.
// Every refusal here is an explicit answer sent before the request is read.
// A balancer's connection reads its PROXY header first (proxy.cpp).
void Worker::admit(std::uint32_t slot, std::uint32_t ip_key, bool tls, bool from_balancer) {
  claim_record(slot);
  if (from_balancer) set_awaiting_proxy(slot, true);
  if (tls) {
    conns_[slot].flags |= f_tls;
    // A TLS handshake is CPU an attacker can make us spend: beyond
    // tls_handshakes_max in flight, a newcomer gets an alert before any.
    if (tls_.handshakes_in_flight() >= config_.tls_handshakes_max) {
      counters_.tls.refused_total.add();
      begin_handshake(slot);
      answer_const(slot, Const::busy_http, Refusal::tls_handshakes);
      return;
    }
  }
  if (draining_) {
    begin_handshake(slot);
    answer_const(slot, Const::shutdown_http, Refusal::shutdown);
    return;
  }
  if (ip_key != PerIpCounts::none) {
    if (shared_.per_ip.add(id_, ip_key) > config_.per_ip_limit) {
      shared_.per_ip.remove(id_, ip_key);
      begin_handshake(slot);
      answer_const(slot, Const::per_ip_http, Refusal::per_ip);
      return;
    }
    ip_keys_[slot] = ip_key;
  }
  if (!rate_limited_) {
    begin_handshake(slot);
    return;
  }
  refill_tokens();
  if (queue_depth_ == 0 && tokens_ >= 1.0) {
    tokens_ -= 1.0;
    begin_handshake(slot);
    return;
  }
  if (queue_depth_ >= config_.accept_queue_max) {
    begin_handshake(slot);
    answer_const(slot, Const::rate_http, Refusal::accept_queue_full);
    return;
  }
  // Nothing is read while queued: the request waits in the socket's kernel
  // buffer, so a queued connection costs its record and nothing else.
  conns_[slot].state = State::queued;
  timer_add(slot, TimerList::queued, config_.accept_queue_timeout_ms);
  ++queue_depth_;
  counters_.accept_queue_depth.set(queue_depth_);
  counters_.queued_total.add();
}

void Worker::refill_tokens() {
  if (now_ms_ > tokens_at_ms_) {
    tokens_ = std::min(tokens_max_, tokens_ + static_cast<double>(now_ms_ - tokens_at_ms_) * tokens_per_ms_);
    tokens_at_ms_ = now_ms_;
  }
}

// Starts the oldest queued connections while tokens last.
void Worker::serve_accept_queue() {
  refill_tokens();
  while (queue_depth_ > 0 && tokens_ >= 1.0) {
    const std::uint32_t slot = queue_.front(TimerList::queued);
    RG_ASSERT(slot != nil && conns_[slot].state == State::queued);
    const std::uint32_t queued_at = conns_[slot].deadline_ms - static_cast<std::uint32_t>(config_.accept_queue_timeout_ms);
    counters_.queue_wait_ms.record(rel_now() - queued_at);
    timer_remove(slot);
    --queue_depth_;
    tokens_ -= 1.0;
    begin_handshake(slot);
  }
  counters_.accept_queue_depth.set(queue_depth_);
}

// How long the loop may sleep: one tick, or less when a queued connection
// is waiting for the next token.
std::uint64_t Worker::wait_budget_us() const {
  constexpr std::uint64_t tick_us = std::uint64_t{tick_ms} * 1000;
  // A fan-out cut short by fanout_batch goes on after this turn's I/O.
  if (fanout_count_ > 0) return 0;
  if (!rate_limited_ || queue_depth_ == 0 || tokens_ >= 1.0) return tick_us;
  const double us = (1.0 - tokens_) / tokens_per_ms_ * 1000.0;
  return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(us) + 1, 1000, tick_us);
}


}  // namespace rg::server
